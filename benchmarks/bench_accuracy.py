"""Accuracy on the peers' protocol (shared/peers/README.md, RESULTS.md), our default model.

Protocol: the 10 tickers with the most rows (ties by name), lookback 60, one model per
horizon H=1 and H=5; per ticker the last 20% of rows are test, the last 10% of the rest is
validation; every test date is an origin (stride 1) forecasting from the true last 60 rows.
Metrics pooled over steps 1..H: MAE, RMSE, MAPE, MASE (|error| / the ticker's mean |one-day
close change| on its training part, i.e. rows before the test cut), dir-acc (sign of the
predicted move == sign of the true move; true moves of 0 excluded, a predicted move of 0
counts as wrong; n/a for naive).

Ours: the forecaster defaults (forecaster.config: GRU n-to-1 quantile network on
volatility-scaled windows, quantiles 0.1/0.5/0.9, AdamW with warm-up + cosine, batch 512,
per-step calibration and median shrinkage fitted on the validation split) with the
protocol's lookback of 60 bars (the encoder reads the last ENCODER_STEPS = 20, as the
product does), trained, calibrated, saved, reloaded and backtested by
forecaster.run.steps.run_training, the product's one training job: the backtest is
forecaster.evaluation.backtest.backtest on the test origins, beside naive, drift and the EWMA and
GARCH(1,1) quantile baselines (whose median is the last close: their point metrics are
naive's). The uncalibrated network is the same bundle through Forecaster.predict_windows(X,
calibrated=False). Budget: the peers' 1,500 steps x 64 = 96,000 windows, validated every
6,400 windows, patience 5 checks; at our batch of 512 that is at most 15 checks of 12 steps
(92,160 windows, 4% under the peers'), validated every 6,144 windows, patience 5:
TrainConfig(epochs=15, max_batches_per_epoch=12, patience=5).

The library's own MASE, coverage, SPL and MSIS (forecaster.evaluation.backtest.score) divide by the mean
|one-day change| of the whole data it is given (train + test here), so its MASE is reported
too but is not the peers'.

    .venv/bin/python benchmarks/bench_accuracy.py [--data PATH --threads 2]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import (
    DEFAULT_DATA,
    DEFAULT_PEERS_RESULTS,
    LoadSampler,
    emit,
    emit_machine,
    library_version,
    load1,
    table,
)

from forecaster.config import DataConfig, ModelConfig, TrainConfig
from forecaster.data.validate import read_ohlc_file, validate_ohlc
from forecaster.data.windows import CLOSE
from forecaster.evaluation import backtest as evaluate
from forecaster.run.steps import run_training, split_windows

log = logging.getLogger("bench_accuracy")
PEER_TICKERS = ("ABT", "ADBE", "AXP", "C", "CAT", "CSCO", "DUK", "IBM", "INTC", "JNJ")
T = 60
HORIZONS = (1, 5)
TEST_FRAC, VAL_FRAC_OF_TRAIN = 0.2, 0.1


def pick_tickers(frame: pd.DataFrame, n: int) -> list[str]:
    counts = frame.groupby("ticker").size()
    order = sorted(counts.index, key=lambda t: (-int(counts[t]), str(t)))
    return sorted(order[:n])


def peer_cuts(n_rows: int) -> tuple[int, int]:
    """(val_start, test_start) row indices of one ticker, as bench_peers.make_splits."""
    test_start = int(np.floor(n_rows * (1 - TEST_FRAC)))
    return test_start - int(round(test_start * VAL_FRAC_OF_TRAIN)), test_start


def peer_metrics(
    bt: evaluate.Backtest, pred: np.ndarray, train_scale: np.ndarray, steps: list[int]
) -> dict[str, float]:
    """The peers' metrics pooled over the given steps (1-based), on the origins with a forecast."""
    cols = [h - 1 for h in steps]
    rows = np.isfinite(pred[:, cols]).all(axis=1)
    actual, p = bt.actual[rows][:, cols], pred[rows][:, cols]
    last = bt.last_close[rows, None]
    err = p - actual
    true_move, pred_move = np.sign(actual - last), np.sign(p - last)
    keep = true_move != 0
    return {
        "MAE": float(np.abs(err).mean()),
        "RMSE": float(np.sqrt((err**2).mean())),
        "MAPE": float((np.abs(err) / np.abs(actual)).mean() * 100),
        "MASE": float((np.abs(err) / train_scale[bt.series_id[rows]][:, None]).mean()),
        "dir_acc": float((pred_move[keep] == true_move[keep]).mean()) if pred_move.any() else float("nan"),
    }


def peer_table(path: Path) -> dict[tuple[str, str], list[str]]:
    """(model, H) -> [MAE, RMSE, MAPE, MASE, dir-acc, windows/s] from the peers' RESULTS.md."""
    out: dict[tuple[str, str], list[str]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 12 and cells[1] in ("1", "5") and not cells[0].startswith("model"):
            out.setdefault((cells[0], cells[1]), [cells[2], cells[3], cells[4], cells[5], cells[6], cells[9]])
    return out


def check_protocol(frame: pd.DataFrame, data_config: DataConfig, n_rows: pd.Series) -> None:
    """Our calendar cut gives exactly the peers' per-ticker test origins and training end, or stop."""
    H = data_config.horizon
    sw = split_windows(frame, data_config)
    panel = sw.panel
    local = sw.test_origins - panel.starts[panel.series_id[sw.test_origins]]
    for s, tk in enumerate(panel.tickers):
        v_start, t_start = peer_cuts(int(n_rows[tk]))
        expected = np.arange(t_start - 1, int(n_rows[tk]) - H)
        if not np.array_equal(local[panel.series_id[sw.test_origins] == s], expected):
            raise SystemExit(f"{tk} H={H}: test origins differ from the peers' protocol")
        train_last = sw.train.origins[panel.series_id[sw.train.origins] == s] - panel.starts[s]
        if train_last.max() + H != v_start - 1:
            raise SystemExit(f"{tk} H={H}: training part ends at row {train_last.max() + H}, peers {v_start - 1}")


def library_cells(block: dict[str, list[float]] | None) -> list[str]:
    """MASE, dir-acc, widest-band coverage, SPL and MSIS of the library's score (mean over steps)."""
    if block is None:
        return ["", "", "", "", ""]
    cov = sorted((k for k in block if k.startswith("coverage_")), key=lambda k: -float(k.split("_")[1]))
    cells = [f"{np.mean(block['mase']):.3f}", f"{np.mean(block['dir_acc']):.3f}"]
    cells += [f"{np.mean(block[cov[0]]):.3f}" if cov else ""]
    cells += [f"{np.mean(block[k]):.4f}" if k in block else "" for k in ("spl", "msis")]
    return cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--peers-results", type=Path, default=DEFAULT_PEERS_RESULTS)
    ap.add_argument("--tickers", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", default=ModelConfig().arch)
    ap.add_argument("--mode", default=ModelConfig().mode)
    ap.add_argument("--seq-len", type=int, default=None, help="encoder bars (default: the product's, ENCODER_STEPS)")
    ap.add_argument("--epochs", type=int, default=15, help="validation checks (max)")
    ap.add_argument("--steps-per-epoch", type=int, default=12)
    ap.add_argument("--patience", type=int, default=5, help="validation checks without improvement (peers: 5)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    load_start = load1()
    version = library_version()
    started_all = time.perf_counter()

    frame = validate_ohlc(read_ohlc_file(args.data), min_rows=T + max(HORIZONS))
    tickers = pick_tickers(frame, args.tickers)
    if args.tickers == 10 and tuple(tickers) != PEER_TICKERS:
        raise SystemExit(f"tickers {tickers} differ from the peers' {PEER_TICKERS}")
    frame = frame[frame["ticker"].isin(tickers)].reset_index(drop=True)
    n_rows = frame.groupby("ticker").size()
    n_dates = frame["date"].nunique()
    # The library cuts one calendar for all tickers; when every ticker has every date, that cut
    # equals the peers' per-ticker row cut (checked per ticker, or the script stops).
    val_start, test_start = peer_cuts(n_dates)
    data_kw = dict(lookback=T, seq_len=args.seq_len, val_fraction=(test_start - val_start) / n_dates)
    model_config = ModelConfig(arch=args.arch, mode=args.mode)
    train_config = TrainConfig(
        epochs=args.epochs, max_batches_per_epoch=args.steps_per_epoch, patience=args.patience, device="cpu"
    )
    budget = args.epochs * args.steps_per_epoch * train_config.batch_size

    rows: dict[int, list[list[str]]] = {}
    per_step: list[list[str]] = []
    per_step_q: list[list[str]] = []
    notes: list[str] = []
    for H in HORIZONS:
        data_config = DataConfig(horizon=H, test_fraction=TEST_FRAC, **data_kw)
        check_protocol(frame, data_config, n_rows)
        with tempfile.TemporaryDirectory() as tmp, LoadSampler() as load:
            t0 = time.perf_counter()
            outcome = run_training(frame, data_config, model_config, train_config, Path(tmp) / "bundle")
            job_s = time.perf_counter() - t0
        sw, fit, bt = outcome.windows, outcome.fit, outcome.backtest
        assert bt is not None
        panel, forecaster = sw.panel, outcome.forecaster
        close = panel.values[:, CLOSE].astype(np.float64)
        train_scale = np.array(
            [
                np.abs(np.diff(close[panel.starts[s] : panel.starts[s] + peer_cuts(int(n_rows[tk]))[1]])).mean()
                for s, tk in enumerate(panel.tickers)
            ]
        )
        X = panel.gather(sw.test_origins, T, H).X
        t0 = time.perf_counter()
        forecaster.predict_windows(X)
        infer_ms = (time.perf_counter() - t0) * 1000 / len(X)
        raw_median = forecaster.predict_windows(X, calibrated=False).median
        ours = outcome.metrics
        tests = evaluate.significance(bt)
        moves = np.sign(bt.actual - bt.last_close[:, None])
        up_share = float((moves[moves != 0] > 0).mean())
        epoch_s = sum(e.seconds for e in fit.history)
        steps = len(fit.history) * args.steps_per_epoch
        notes.append(
            f"H={H}: {len(sw.train):,} training windows, {len(sw.val):,} validation, {len(sw.test_origins):,} test "
            f"origins; {steps} steps x {train_config.batch_size} = {steps * train_config.batch_size:,} windows in "
            f"{epoch_s:.1f} s of epochs ({steps * train_config.batch_size / epoch_s:,.0f} windows/s incl. validation "
            f"and the first epoch's feature build), run_training {job_s:.0f} s in all; best check {fit.best_epoch}/"
            f"{len(fit.history)}{' (early stop)' if fit.stopped_early else ''}; median shrink per step "
            f"{outcome.calibration.shrink.round(2).tolist()}; predict {infer_ms:.3f} ms/window; an always-up forecast "
            f"would score dir-acc {up_share:.3f}; DM p per step, model vs naive (abs error) "
            f"{[None if p is None else round(p, 3) for p in tests['model_vs_naive']['p_value']]}, model vs ewma "
            f"(pinball) {[None if p is None else round(p, 4) for p in tests['model_vs_ewma']['p_value']]}; "
            f"load {load.summary()}"
        )
        label_of = {"model": f"ours {args.arch} {args.mode}"}
        forecasts = {"model": bt.forecasts["model"], "model_uncalibrated": raw_median}
        forecasts |= {k: v for k, v in bt.forecasts.items() if k != "model"}
        rows[H] = []
        for name, pred in forecasts.items():
            m = peer_metrics(bt, pred, train_scale, list(range(1, H + 1)))
            label = label_of.get(name, "ours, uncalibrated" if name == "model_uncalibrated" else f"{name} (ours)")
            dir_acc = "n/a" if np.isnan(m["dir_acc"]) else f"{m['dir_acc']:.3f}"
            rows[H].append(
                [label, str(H), f"{m['MAE']:.4f}", f"{m['RMSE']:.4f}", f"{m['MAPE']:.3f}", f"{m['MASE']:.3f}", dir_acc]
                + library_cells(ours.get(name))
            )
            if H == 5:
                per = [peer_metrics(bt, pred, train_scale, [h]) for h in range(1, H + 1)]
                per_step.append(
                    [label]
                    + [f"{p['MASE']:.3f}" for p in per]
                    + ["n/a" if np.isnan(p["dir_acc"]) else f"{p['dir_acc']:.3f}" for p in per]
                )
                block = ours.get(name)
                if block is not None and "spl" in block:
                    cov = [k for k in block if k.startswith("coverage_")][0]
                    per_step_q.append([label] + [f"{c:.3f}" for c in block[cov]] + [f"{v:.4f}" for v in block["spl"]])
        log.info("H=%d done", H)
    load_end = load1()

    emit(f"# bench_accuracy: peers' protocol, {len(tickers)} tickers ({' '.join(tickers)}), T={T}, H=1 and H=5")
    emit_machine(load_start)
    emit(f"library: {version} at start, {library_version()} at end")
    emit(
        f"calendar: {n_dates} dates, rows per ticker {sorted(set(n_rows.tolist()))}; cuts (row) val {val_start}, "
        f"test {test_start}; test origins and training end checked equal to the peers' per ticker"
    )
    emit(
        f"ours: {model_config.model_dump(mode='json')}, lookback {T}, encoder {DataConfig(**data_kw).encoder_steps} "
        f"bars; TrainConfig(epochs={args.epochs}, max_batches_per_epoch={args.steps_per_epoch}, "
        f"batch {train_config.batch_size}, patience {args.patience}): at most {budget:,} windows (peers 96,000); "
        f"{torch.get_num_threads()} torch threads"
    )
    for line in notes:
        emit("- " + line)
    emit(
        f"total run time {time.perf_counter() - started_all:.0f} s; load average (1 min) start {load_start:.2f}, "
        f"end {load_end:.2f}"
    )
    emit()
    header = ["model", "H", "MAE", "RMSE", "MAPE %", "MASE (peers')", "dir-acc (peers')", "MASE (library)"]
    header += ["dir-acc (library)", "80% coverage", "SPL (library)", "MSIS (library)"]
    peers = peer_table(args.peers_results)
    for H in HORIZONS:
        emit(table(header, rows[H]))
        emit()
    if peers:
        emit(f"Peers, **measured in another session** ({args.peers_results}):")
        emit()
        emit(
            table(
                ["peer model", "H", "MAE", "RMSE", "MAPE %", "MASE", "dir-acc", "windows/s"],
                [[m, h, *v] for (m, h), v in sorted(peers.items(), key=lambda kv: (kv[0][1], kv[0][0]))],
            )
        )
        emit()
    emit("Per-step H=5 (peers' MASE, then dir-acc):")
    emit()
    emit(table(["model"] + [f"MASE h{h}" for h in range(1, 6)] + [f"dir h{h}" for h in range(1, 6)], per_step))
    emit()
    emit("Per-step H=5, the library's 80% coverage, then SPL:")
    emit()
    emit(table(["model"] + [f"cov h{h}" for h in range(1, 6)] + [f"SPL h{h}" for h in range(1, 6)], per_step_q))


if __name__ == "__main__":
    main()
