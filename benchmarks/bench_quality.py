"""Forecast quality per step on tickers AND dates the model never saw (issue 7, "Goal").

Everything goes through the product's own code: `forecaster.run.steps.run_training` with the default
`TrainingConfig()` (its own train/validation/test split, calibration and bundle happen inside),
`forecaster.run.steps.evaluate_frame` (rolling origin, stride 1, every step 1..H, beside naive, drift,
EWMA and GARCH), `forecaster.evaluation.backtest.score` and `.significance` (Diebold-Mariano per step), and
`forecaster.evaluation.backtest_file` (the long backtest table, used to cross-check the scores and written
with --backtest-out). The uncalibrated network is the same backtest with
`Forecaster.predict_windows(X, calibrated=False)` (`forecaster.run.steps.predict_fn(forecaster, calibrated=False)`).

Tickers: HELD_OUT (15, by name) are never trained on; the other 35 are the training tickers.
Periods (--period):
- final: train on the 35 training tickers, dates < 2016-01-01; evaluate the 15 held-out tickers
  on every origin from 2016-01-04 to the end of the data (their earlier history feeds the
  windows), and the 35 training tickers on the same dates (dates unseen, names seen).
- tuning: train on dates < 2013-01-01; evaluate origins 2013-01-02 .. targets up to 2015-12-31,
  to choose settings without touching the final period.
- early: train on dates < 2010-01-01; evaluate origins 2010-01-04 .. targets up to 2012-12-31: a
  second period for choices, whose validation split (2007-2008) is a crisis, unlike tuning's.
Goals, per step h = 1..H on the held-out tickers: MAE ratio model/naive <= 1.000; empirical
coverage of the 10-90 band within 0.78-0.82 (every central band: nominal +- 0.02); SPL ratio
model/ewma <= 0.98.

--time-budget instead runs `forecaster train --data PATH` (all tickers, defaults, the embedded
SQLite MLflow store in a temporary working folder) under /usr/bin/time: the goal is <= 20 minutes.

    .venv/bin/python benchmarks/bench_quality.py --period final      # about 10-20 min on 2 cores
    .venv/bin/python benchmarks/bench_quality.py --period tuning
    .venv/bin/python benchmarks/bench_quality.py --period early
    .venv/bin/python benchmarks/bench_quality.py --time-budget
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from _common import DEFAULT_DATA, LoadSampler, emit, emit_machine, library_version, load1, table

from forecaster.config import TrainingConfig, quantile_column
from forecaster.data.sources import load_source
from forecaster.data.windows import Panel
from forecaster.evaluation import backtest as evaluate
from forecaster.evaluation.backtest_file import backtest_table, write_backtest
from forecaster.model.predictor import Forecaster
from forecaster.run.steps import TrainOutcome, evaluate_frame, predict_fn, run_training

log = logging.getLogger("bench_quality")
HELD_OUT = ("ABT", "AXP", "BA", "COP", "CSCO", "DUK", "GS", "HD", "KO", "MMM", "NVDA", "PFE", "SBUX", "UNP", "ADBE")
GOAL_MAE_RATIO = 1.0
GOAL_COVERAGE_SLACK = 0.02  # nominal 0.80 -> 0.78 .. 0.82
GOAL_SPL_RATIO = 0.98
TIME_BUDGET_S = 20 * 60


@dataclass(frozen=True)
class Period:
    train_before: str  # training data: dates strictly before
    eval_from: str  # first forecast origin
    eval_through: str | None  # last target date (None: the end of the data)


PERIODS = {
    "final": Period("2016-01-01", "2016-01-04", None),
    "tuning": Period("2013-01-01", "2013-01-02", "2015-12-31"),
    "early": Period("2010-01-01", "2010-01-04", "2012-12-31"),
}


@dataclass(frozen=True)
class Evaluation:
    label: str
    result: evaluate.Backtest
    metrics: evaluate.Metrics
    tests: dict[str, dict[str, Any]]
    raw: dict[str, list[float]]  # the uncalibrated network's metrics on the same origins
    seconds: float


def evaluate_set(forecaster: Forecaster, frame: pd.DataFrame, period: Period, label: str) -> Evaluation:
    """The product's evaluation of one ticker set, plus the uncalibrated network on the same origins."""
    if period.eval_through is not None:
        frame = frame[frame["date"] <= pd.Timestamp(period.eval_through)]
    L, H = forecaster.lookback, forecaster.horizon
    started = time.perf_counter()
    result = evaluate_frame(forecaster, frame, L, H, from_date=period.eval_from)
    metrics = evaluate.score(result)
    tests = evaluate.significance(result)
    seconds = time.perf_counter() - started
    # evaluate_frame's own origins (Panel.from_frame + rolling_origins), forecast by the raw network
    panel = Panel.from_frame(frame)
    origins = evaluate.rolling_origins(panel, L, H, period.eval_from)
    raw_bt = evaluate.backtest(predict_fn(forecaster, calibrated=False), panel, L, H, origins)
    if not np.array_equal(raw_bt.origin_dates, result.origin_dates) or not np.array_equal(
        raw_bt.series_id, result.series_id
    ):
        raise SystemExit(f"{label}: the uncalibrated backtest's origins differ from evaluate_frame's")
    cross_check(result, metrics, label)
    return Evaluation(label, result, metrics, tests, evaluate.score(raw_bt)["model"], seconds)


def cross_check(result: evaluate.Backtest, metrics: evaluate.Metrics, label: str) -> None:
    """The long backtest table (forecaster.evaluation.backtest_file) gives the same coverage and naive MAE."""
    long = backtest_table(result)
    lo, hi = quantile_column(result.levels[0]), quantile_column(result.levels[-1])
    for h in range(1, result.horizon + 1):
        rows = long[long["step"] == h]
        coverage = float(((rows["actual"] >= rows[lo]) & (rows["actual"] <= rows[hi])).mean())
        naive_mae = float((rows["naive"] - rows["actual"]).abs().mean())
        if not np.isclose(coverage, metrics["model"]["coverage"][h - 1]) or not np.isclose(
            naive_mae, metrics["naive"]["mae"][h - 1]
        ):
            raise SystemExit(f"{label} h{h}: backtest table and evaluate.score disagree")
    log.info("%s: backtest table cross-check passed (%d rows)", label, len(long))


def bands(block: dict[str, list[float]]) -> list[str]:
    """The nominal % of every central band scored ('80', ...), widest first."""
    return sorted((k.split("_", 1)[1] for k in block if k.startswith("coverage_")), key=lambda p: -float(p))


def ratio(metrics: evaluate.Metrics, a: str, b: str, metric: str) -> list[float]:
    return [x / y for x, y in zip(metrics[a][metric], metrics[b][metric], strict=True)]


def day(value: Any) -> str:
    return f"{pd.Timestamp(value):%Y-%m-%d}"


def p_fmt(p: float | None) -> str:
    return "n/a" if p is None else (f"{p:.2e}" if p < 1e-3 else f"{p:.3f}")


def emit_evaluation(ev: Evaluation) -> None:
    m, res, H = ev.metrics, ev.result, ev.result.horizon
    tickers = sorted({res.tickers[s] for s in np.unique(res.series_id)})
    emit(f"### {ev.label}")
    emit()
    emit(
        f"{len(tickers)} tickers ({' '.join(tickers)}); {len(res.series_id):,} origins, "
        f"{day(res.origin_dates.min())} .. {day(res.origin_dates.max())}, last target "
        f"{day(res.target_dates.max())}; levels {list(res.levels)}; "
        f"evaluate_frame + score + significance {ev.seconds:.1f} s"
    )
    emit()
    mae_m, mae_d = ratio(m, "model", "naive", "mae"), ratio(m, "drift", "naive", "mae")
    mase_m = ratio(m, "model", "naive", "mase")
    naive_dm = ev.tests["model_vs_naive"]
    raw_mae = [r / n for r, n in zip(ev.raw["mae"], m["naive"]["mae"], strict=True)]
    rows = [
        [
            f"h{h + 1}",
            f"{m['naive']['mae'][h]:.4f}",
            f"**{mae_m[h]:.4f}**",
            f"{mae_d[h]:.4f}",
            f"{mase_m[h]:.4f}",
            f"{raw_mae[h]:.4f}",
            f"{m['model']['dir_acc'][h]:.3f}",
            p_fmt(naive_dm["p_value"][h]),
            naive_dm["verdict"][h],
        ]
        for h in range(H)
    ]
    emit("Point forecasts (MAE in price units, pooled; MASE per series; DM on absolute error):")
    emit()
    emit(
        table(
            [
                "step",
                "naive MAE",
                "MAE model/naive",
                "MAE drift/naive",
                "MASE model/naive",
                "MAE uncal./naive",
                "model dir-acc",
                "DM p (model vs naive)",
                "verdict",
            ],
            rows,
        )
    )
    emit()
    band_names = bands(m["model"])
    header = ["step"]
    for p in band_names:
        header += [f"cov {p}% model", f"cov {p}% uncal.", f"cov {p}% ewma", f"cov {p}% garch", f"width {p}% model/ewma"]
    rows = []
    for h in range(H):
        row = [f"h{h + 1}"]
        for p in band_names:
            cov = f"coverage_{p}"
            row += [
                f"**{m['model'][cov][h]:.3f}**",
                f"{ev.raw[cov][h]:.3f}",
                f"{m['ewma'][cov][h]:.3f}",
                f"{m['garch'][cov][h]:.3f}" if "garch" in m else "n/a",
                f"{m['model'][f'width_{p}'][h] / m['ewma'][f'width_{p}'][h]:.3f}",
            ]
        rows.append(row)
    emit("Central bands: empirical coverage (nominal in the header) and mean scaled width:")
    emit()
    emit(table(header, rows))
    emit()
    spl_m = ratio(m, "model", "ewma", "spl")
    spl_raw = [r / e for r, e in zip(ev.raw["spl"], m["ewma"]["spl"], strict=True)]
    spl_g = ratio(m, "garch", "ewma", "spl") if "garch" in m else [float("nan")] * H
    ewma_dm = ev.tests["model_vs_ewma"]
    rows = [
        [
            f"h{h + 1}",
            f"{m['ewma']['spl'][h]:.4f}",
            f"**{spl_m[h]:.4f}**",
            f"{spl_raw[h]:.4f}",
            f"{spl_g[h]:.4f}",
            f"{m['model']['msis'][h]:.3f}",
            f"{ev.raw['msis'][h]:.3f}",
            f"{m['ewma']['msis'][h]:.3f}",
            f"{m['garch']['msis'][h]:.3f}" if "garch" in m else "n/a",
            p_fmt(ewma_dm["p_value"][h]),
            ewma_dm["verdict"][h],
        ]
        for h in range(H)
    ]
    emit("Quantiles: SPL (scaled pinball loss, mean over levels) and MSIS of the widest band; DM on mean pinball:")
    emit()
    emit(
        table(
            [
                "step",
                "ewma SPL",
                "SPL model/ewma",
                "SPL uncal./ewma",
                "SPL garch/ewma",
                "MSIS model",
                "MSIS uncal.",
                "MSIS ewma",
                "MSIS garch",
                "DM p (model vs ewma)",
                "verdict",
            ],
            rows,
        )
    )
    emit()
    emit_goals(m, mae_m, spl_m, band_names)


def emit_goals(m: evaluate.Metrics, mae_ratio: list[float], spl_ratio: list[float], band_names: list[str]) -> None:
    """The three goals, met or not per step, with the figure."""

    def verdict(ok: bool, figure: str) -> str:
        return f"met ({figure})" if ok else f"**not met** ({figure})"

    rows, met = [], {"mae": 0, "cov": 0, "spl": 0}
    for h in range(len(mae_ratio)):
        cov_cells, cov_ok = [], True
        for p in band_names:
            c, nominal = m["model"][f"coverage_{p}"][h], float(p) / 100.0
            ok = nominal - GOAL_COVERAGE_SLACK - 1e-12 <= c <= nominal + GOAL_COVERAGE_SLACK + 1e-12
            cov_ok &= ok
            cov_cells.append(f"{p}%: {c:.3f}")
        checks = (mae_ratio[h] <= GOAL_MAE_RATIO, cov_ok, spl_ratio[h] <= GOAL_SPL_RATIO)
        for key, ok in zip(met, checks, strict=True):
            met[key] += int(ok)
        rows.append(
            [
                f"h{h + 1}",
                verdict(checks[0], f"{mae_ratio[h]:.5f}"),
                verdict(checks[1], ", ".join(cov_cells)),
                verdict(checks[2], f"{spl_ratio[h]:.4f}"),
            ]
        )
    emit(
        f"Goals: MAE model/naive <= {GOAL_MAE_RATIO:.3f}; coverage within nominal +- {GOAL_COVERAGE_SLACK:.2f} "
        f"(0.78-0.82 for the 80% band); SPL model/ewma <= {GOAL_SPL_RATIO:.2f}:"
    )
    emit()
    emit(table(["step", "MAE ratio", "coverage", "SPL ratio"], rows))
    emit()
    H = len(mae_ratio)
    emit(f"Steps meeting each goal: MAE {met['mae']}/{H}, coverage {met['cov']}/{H}, SPL {met['spl']}/{H}.")
    emit()


def emit_training(outcome: TrainOutcome, config: TrainingConfig, seconds: float, load: LoadSampler) -> None:
    fit, w = outcome.fit, outcome.windows
    history = outcome.fit.history
    epoch_s = sum(e.seconds for e in history)
    seen = sum(e.windows_per_s * e.seconds for e in history)
    emit("### Training (forecaster.run.steps.run_training, default TrainingConfig)")
    emit()
    emit(f"config: `{json.dumps(config.model_dump(mode='json'), separators=(',', ':'))}`")
    emit()
    emit(
        f"- data: {len(w.panel.tickers)} tickers, {len(w.panel.values):,} rows, "
        f"{pd.Timestamp(w.panel.dates.min()):%Y-%m-%d} .. {pd.Timestamp(w.panel.dates.max()):%Y-%m-%d}; the product's "
        f"split: validation from {w.split.val_start:%Y-%m-%d}, test from {w.split.test_start:%Y-%m-%d}; windows "
        f"train {len(w.train):,}, validation {len(w.val):,}, test origins {len(w.test_origins):,}"
    )
    emit(
        f"- fit: {len(history)} epochs on {fit.device} with {torch.get_num_threads()} torch threads, best epoch "
        f"{fit.best_epoch}{' (early stop)' if fit.stopped_early else ''}, best validation pinball "
        f"{fit.best_val_loss:.5f}; val loss per epoch {[round(e.val_loss, 5) for e in history]}"
    )
    emit(
        f"- time: run_training wall {seconds:.0f} s (fit, calibration, bundle, test backtest); epochs "
        f"{epoch_s:.0f} s, {seen / epoch_s:,.0f} training windows/s including the validation passes "
        f"(per epoch: {', '.join(f'{e.windows_per_s:,.0f}' for e in history)})"
    )
    emit(f"- 1-min load average during training: {load.summary()}")
    emit()
    c, mc = outcome.calibration, outcome.forecaster.bundle.model_config
    levels = mc.network_levels if c.offsets.shape[1] == len(mc.network_levels) else mc.quantiles
    assert c.offsets.shape[1] == len(levels), "calibration offsets match neither the network's nor the served levels"
    emit(
        "Calibration fitted on the validation split (outcome.calibration; offsets in volatility units z, at the "
        f"network's {len(levels)} levels; served: {list(mc.quantiles)}):"
    )
    emit()
    emit(
        table(
            ["step", "median shrink", *[f"offset q{q:g}" for q in levels]],
            [
                [f"h{h + 1}", f"{c.shrink[h]:.2f}", *[f"{c.offsets[h, k]:+.4f}" for k in range(len(levels))]]
                for h in range(len(c.shrink))
            ],
        )
    )
    emit()
    if outcome.metrics:
        m = outcome.metrics
        mae, spl = ratio(m, "model", "naive", "mae"), ratio(m, "model", "ewma", "spl")
        cov = m["model"]["coverage"]
        emit(
            "The product's own test split (training tickers, dates from "
            f"{w.split.test_start:%Y-%m-%d}, inside the training period), as outcome.metrics: "
            + "; ".join(
                f"h{h + 1} MAE ratio {mae[h]:.4f}, coverage {cov[h]:.3f}, SPL ratio {spl[h]:.4f}"
                for h in range(len(mae))
            )
        )
        emit()


def run_period(args: argparse.Namespace) -> None:
    period = PERIODS[args.period]
    torch.set_num_threads(args.threads)
    load_start = load1()
    version = library_version()
    frame, origin = load_source("file", args.data)
    missing = sorted(set(HELD_OUT) - set(frame["ticker"]))
    if missing:
        raise SystemExit(f"held-out tickers {missing} are not in {origin}")
    held = frame["ticker"].isin(HELD_OUT)
    train_frame = frame[~held & (frame["date"] < pd.Timestamp(period.train_before))]
    config = TrainingConfig().with_overrides(dict(kv.split("=", 1) for kv in args.set))
    log.info("training on %d rows of %d tickers", len(train_frame), train_frame["ticker"].nunique())
    with tempfile.TemporaryDirectory() as tmp, LoadSampler() as load:
        started = time.perf_counter()
        outcome = run_training(train_frame, config.data, config.model, config.train, Path(tmp) / "bundle")
        train_s = time.perf_counter() - started
    log.info("trained in %.0f s; evaluating", train_s)
    sets = {"held-out": frame[held], "training tickers": frame[~held]}
    evaluations = []
    for name, subset in sets.items():
        label = f"{name} tickers" if name == "held-out" else name
        ev = evaluate_set(
            outcome.forecaster, subset, period, f"{args.period.upper()}: {label}, dates after the training data"
        )
        evaluations.append(ev)
        if args.backtest_out is not None:
            path = args.backtest_out / f"backtest_{args.period}_{name.replace(' ', '_')}.parquet"
            log.info("backtest written to %s", write_backtest(ev.result, path))

    emit(f"## bench_quality: {args.period} period")
    emit()
    emit_machine(load_start)
    emit(f"library: {version} at start, {library_version()} at end")
    emit(
        f"data: {origin}; held-out tickers ({len(HELD_OUT)}): {' '.join(sorted(HELD_OUT))}; training tickers "
        f"({train_frame['ticker'].nunique()}): dates < {period.train_before}; evaluation origins from "
        f"{period.eval_from}" + (f", targets up to {period.eval_through}" if period.eval_through else "")
    )
    if args.set:
        emit(f"**overrides of the defaults**: {' '.join(args.set)}")
    emit()
    for ev in evaluations:
        emit_evaluation(ev)
    emit_training(outcome, config, train_s, load)
    emit(f"load average (1 min) at end: {load1():.2f}")


TIME_KEYS = (
    "Elapsed (wall clock) time (h:mm:ss or m:ss)",
    "User time (seconds)",
    "System time (seconds)",
    "Percent of CPU this job got",
    "Maximum resident set size (kbytes)",
)


def time_stats(stderr: str) -> dict[str, str]:
    """The lines of GNU time's -v report that we quote, by their label."""
    stats = {}
    for line in stderr.splitlines():
        for key in TIME_KEYS:
            if line.strip().startswith(key + ":"):
                stats[key] = line.strip()[len(key) + 1 :].strip()
    return stats


def run_time_budget(args: argparse.Namespace) -> None:
    """`forecaster train --data PATH` end to end under /usr/bin/time, in a temporary working folder."""
    exe = Path(sys.executable).with_name("forecaster")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the embedded SQLite store
    if args.omp_threads is not None:  # a control, not the default: torch then uses this many threads
        env["OMP_NUM_THREADS"] = str(args.omp_threads)
    command = ["/usr/bin/time", "-v", str(exe), "train", "--data", str(args.data.resolve())]
    load_start = load1()
    version = library_version()
    with tempfile.TemporaryDirectory(prefix="bench_quality_train_") as tmp, LoadSampler() as load:
        log.info("running %s in %s", " ".join(command), tmp)
        proc = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True)
        store = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
        listing = sorted(str(p.relative_to(tmp)) for p in Path(tmp).iterdir())
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-6000:])
    if proc.returncode != 0:
        raise SystemExit(f"forecaster train failed with exit code {proc.returncode} (its output is above)")
    stats = time_stats(proc.stderr)
    wall_text = stats["Elapsed (wall clock) time (h:mm:ss or m:ss)"]
    wall = sum(float(x) * 60**i for i, x in enumerate(reversed(wall_text.split(":"))))
    output = (proc.stdout + proc.stderr).splitlines()  # rich writes its tables to stderr
    best = [line.strip() for line in output if line.strip().startswith("best epoch")]
    epochs = [" ".join(line.split()) for line in output if line.strip().startswith("epoch ")]
    result_line = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    emit("## bench_quality: time budget of `forecaster train`")
    emit()
    emit_machine(load_start)
    emit(f"library: {version} at start, {library_version()} at end")
    omp = f", OMP_NUM_THREADS={args.omp_threads}" if args.omp_threads is not None else ""
    emit(f"command (cwd: a new temporary folder, MLFLOW_TRACKING_URI unset{omp}): `{' '.join(command)}`")
    emit(f"working folder after the run: {listing}, {store / 1e6:,.1f} MB")
    emit()
    rows = [
        ["wall clock", f"**{wall:.0f} s ({wall / 60:.1f} min)**"],
        ["user CPU", f"{float(stats['User time (seconds)']):.0f} s"],
        ["system CPU", f"{float(stats['System time (seconds)']):.0f} s"],
        ["CPU share", stats["Percent of CPU this job got"]],
        ["max RSS", f"{int(stats['Maximum resident set size (kbytes)']) / 1024**2:.2f} GiB"],
        ["1-min load during the run", load.summary()],
        ["budget", f"{TIME_BUDGET_S / 60:.0f} min: **{'met' if wall <= TIME_BUDGET_S else 'not met'}**"],
    ]
    emit(table(["what", "value"], rows))
    emit()
    emit(f"CLI summary: {best[-1] if best else 'n/a'}; {result_line[-1] if result_line else ''}")
    emit()
    emit("The CLI's epoch lines (progress bar: batches, elapsed, losses, windows/s):")
    emit()
    for line in epochs:
        emit(f"- {line}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--period", choices=sorted(PERIODS), default="final")
    ap.add_argument("--time-budget", action="store_true", help="time `forecaster train --data PATH` instead")
    ap.add_argument(
        "--threads",
        type=int,
        default=TrainingConfig().train.threads,
        help="torch threads outside training (training takes train.threads, set with --set)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a dotted setting of the default TrainingConfig (tuning only; reported)",
    )
    ap.add_argument("--omp-threads", type=int, help="--time-budget only: OMP_NUM_THREADS for the CLI (a control)")
    ap.add_argument("--backtest-out", type=Path, help="folder for the backtest tables (.parquet)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.time_budget:
        run_time_budget(args)
    else:
        run_period(args)


if __name__ == "__main__":
    main()
