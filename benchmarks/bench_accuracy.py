"""Accuracy on the peers' protocol (shared/peers/README.md, RESULTS.md), our default model.

Protocol: the 10 tickers with the most rows (ties by name), lookback 60, one model per
horizon H=1 and H=5; per ticker the last 20% of rows are test, the last 10% of the rest is
validation; every test date is an origin (stride 1) forecasting from the true last 60 rows.
Metrics pooled over steps 1..H: MAE, RMSE, MAPE, MASE (|error| / the ticker's mean |one-day
close change| on its training part, i.e. rows before the test cut), dir-acc (sign of the
predicted move == sign of the true move; true moves of 0 excluded, a predicted move of 0
counts as wrong; n/a for naive).

Ours: forecaster defaults (lstm n-to-1, hidden 64 x 2, dropout 0.1, quantiles 0.1/0.5/0.9,
pinball loss, AdamW lr 2e-3 with warm-up + cosine, batch 256), trained through
forecaster.job.split_windows + forecaster.train.fit, saved and reloaded as a bundle, and
backtested with forecaster.evaluate.backtest. Budget: the peers' 1,500 steps x 64 windows =
96,000 windows = 375 steps x 256, validated every 6,400 windows (25 steps; the peers' 100 x
64), patience 5 checks: TrainConfig(epochs=15, max_batches_per_epoch=25).

The library's own MASE (forecaster.evaluate.score) divides by the mean |one-day change| of
the whole data it is given (train + test here), so it is reported too but is not the peers'.

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
from _common import DEFAULT_DATA, DEFAULT_PEERS_RESULTS, emit, emit_machine, load1, table

from forecaster import evaluate
from forecaster.artifact import load_bundle, save_bundle
from forecaster.config import DataConfig, ModelConfig, TrainConfig
from forecaster.data import read_ohlc_file, validate_ohlc
from forecaster.job import predict_fn, split_windows
from forecaster.predict import Forecaster
from forecaster.train import fit
from forecaster.windows import CLOSE

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


def peer_metrics(bt: evaluate.Backtest, pred: np.ndarray, train_scale: np.ndarray,
                 steps: list[int]) -> dict[str, float]:
    """The peers' metrics pooled over the given steps (1-based)."""
    cols = [h - 1 for h in steps]
    actual, p = bt.actual[:, cols], pred[:, cols]
    last = bt.last_close[:, None]
    err = p - actual
    true_move, pred_move = np.sign(actual - last), np.sign(p - last)
    keep = true_move != 0
    return {
        "MAE": float(np.abs(err).mean()),
        "RMSE": float(np.sqrt((err**2).mean())),
        "MAPE": float((np.abs(err) / np.abs(actual)).mean() * 100),
        "MASE": float((np.abs(err) / train_scale[bt.series_id][:, None]).mean()),
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--peers-results", type=Path, default=DEFAULT_PEERS_RESULTS)
    ap.add_argument("--tickers", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", default="lstm")
    ap.add_argument("--mode", default="n-to-1")
    ap.add_argument("--epochs", type=int, default=15, help="validation checks (max)")
    ap.add_argument("--steps-per-epoch", type=int, default=25)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    load_start = load1()
    started_all = time.perf_counter()

    frame = validate_ohlc(read_ohlc_file(args.data), min_rows=T + max(HORIZONS))
    tickers = pick_tickers(frame, args.tickers)
    if args.tickers == 10 and tuple(tickers) != PEER_TICKERS:
        raise SystemExit(f"tickers {tickers} differ from the peers' {PEER_TICKERS}")
    frame = frame[frame["ticker"].isin(tickers)].reset_index(drop=True)
    n_rows = frame.groupby("ticker").size()
    n_dates = frame["date"].nunique()
    # The library cuts one calendar for all tickers; when every ticker has every date, that cut
    # equals the peers' per-ticker row cut (checked per ticker below, or the script stops).
    val_start, test_start = peer_cuts(n_dates)
    data_config_kw = dict(lookback=T, val_fraction=(test_start - val_start) / n_dates, test_fraction=TEST_FRAC)

    rows: dict[int, list[list[str]]] = {}
    per_step: list[list[str]] = []
    notes: list[str] = []
    train_config = TrainConfig(epochs=args.epochs, max_batches_per_epoch=args.steps_per_epoch, device="cpu")
    for H in HORIZONS:
        data_config = DataConfig(horizon=H, **data_config_kw)
        model_config = ModelConfig(arch=args.arch, mode=args.mode)
        sw = split_windows(frame, data_config)
        panel = sw.panel
        # the protocol check: our cut gives exactly the peers' per-ticker test origins and val cut
        local = sw.test_origins - panel.starts[panel.series_id[sw.test_origins]]
        for s, tk in enumerate(panel.tickers):
            v_start, t_start = peer_cuts(int(n_rows[tk]))
            expected = np.arange(t_start - 1, int(n_rows[tk]) - H)
            got = local[panel.series_id[sw.test_origins] == s]
            if not np.array_equal(got, expected):
                raise SystemExit(f"{tk} H={H}: test origins differ from the peers' protocol")
            train_last = sw.train.origins[panel.series_id[sw.train.origins] == s] - panel.starts[s]
            if train_last.max() + H != v_start - 1:
                raise SystemExit(f"{tk} H={H}: training part ends at row {train_last.max() + H}, peers {v_start - 1}")
        close = panel.values[:, CLOSE].astype(np.float64)
        train_scale = np.array([
            np.abs(np.diff(close[panel.starts[s] : panel.starts[s] + peer_cuts(int(n_rows[tk]))[1]])).mean()
            for s, tk in enumerate(panel.tickers)
        ])

        t0 = time.perf_counter()
        result = fit(model_config, train_config, sw.train, sw.val)
        train_s = time.perf_counter() - t0
        steps = len(result.history) * args.steps_per_epoch
        with tempfile.TemporaryDirectory() as tmp:
            save_bundle(tmp, result.model, model_config, data_config, sw.train.transform)
            forecaster = Forecaster(load_bundle(tmp), device="cpu")
        t0 = time.perf_counter()
        bt = evaluate.backtest(predict_fn(forecaster), panel, T, H, sw.test_origins)
        infer_ms = (time.perf_counter() - t0) * 1000 / len(sw.test_origins)
        ours = evaluate.score(bt)
        moves = np.sign(bt.actual - bt.last_close[:, None])
        up_share = float((moves[moves != 0] > 0).mean())
        notes.append(
            f"H={H}: {len(sw.train):,} training windows, {len(sw.val):,} validation, {len(sw.test_origins):,} test "
            f"origins; {steps} steps x 256 = {steps * 256:,} windows in {train_s:.1f} s ({steps * 256 / train_s:,.0f} "
            f"windows/s incl. validation); best epoch {result.best_epoch}/{len(result.history)}"
            f"{' (early stop)' if result.stopped_early else ''}; scale {sw.train.transform.scale:.5f}; "
            f"backtest {infer_ms:.3f} ms/window; an always-up forecast would score dir-acc {up_share:.3f}"
        )
        rows[H] = []
        for name, pred in bt.forecasts.items():
            m = peer_metrics(bt, pred, train_scale, list(range(1, H + 1)))
            label = f"ours {args.arch} {args.mode}" if name == "model" else f"{name} (ours)"
            rows[H].append([
                label, str(H), f"{m['MAE']:.4f}", f"{m['RMSE']:.4f}", f"{m['MAPE']:.3f}", f"{m['MASE']:.3f}",
                "n/a" if np.isnan(m["dir_acc"]) else f"{m['dir_acc']:.3f}",
                f"{np.mean(ours[name]['mase']):.3f}", f"{np.mean(ours[name]['dir_acc']):.3f}",
                f"{np.mean(ours[name]['coverage']):.3f}" if "coverage" in ours[name] else "",
            ])
            if H == 5:
                per = [peer_metrics(bt, pred, train_scale, [h]) for h in range(1, H + 1)]
                per_step.append([label] + [f"{p['MASE']:.3f}" for p in per]
                                + ["n/a" if np.isnan(p["dir_acc"]) else f"{p['dir_acc']:.3f}" for p in per])
        log.info("H=%d done: %s", H, rows[H])
    load_end = load1()

    emit(f"# bench_accuracy: peers' protocol, {len(tickers)} tickers ({' '.join(tickers)}), T={T}, H=1 and H=5")
    emit_machine(load_start)
    emit(f"calendar: {n_dates} dates, rows per ticker {sorted(set(n_rows.tolist()))}; cuts (row) val {val_start}, "
         f"test {test_start}; test origins and training end checked equal to the peers' per ticker")
    emit(f"ours: {args.arch} {args.mode}, hidden 64 x 2, defaults of forecaster.config; "
         f"TrainConfig(epochs={args.epochs}, max_batches_per_epoch={args.steps_per_epoch}, batch 256), "
         f"{torch.get_num_threads()} torch threads")
    for line in notes:
        emit("- " + line)
    emit(f"total run time {time.perf_counter() - started_all:.0f} s; load average (1 min) start {load_start:.2f}, "
         f"end {load_end:.2f}")
    emit()
    header = ["model", "H", "MAE", "RMSE", "MAPE %", "MASE (peers')", "dir-acc (peers')", "MASE (library)",
              "dir-acc (library)", "80% coverage"]
    peers = peer_table(args.peers_results)
    for H in HORIZONS:
        emit(table(header, rows[H]))
        emit()
    if peers:
        emit(f"Peers, **measured in another session** ({args.peers_results}):")
        emit()
        emit(table(["peer model", "H", "MAE", "RMSE", "MAPE %", "MASE", "dir-acc", "windows/s"],
                   [[m, h, *v] for (m, h), v in sorted(peers.items(), key=lambda kv: (kv[0][1], kv[0][0]))]))
        emit()
    emit("Per-step H=5 (peers' MASE, then dir-acc):")
    emit()
    emit(table(["model"] + [f"MASE h{h}" for h in range(1, 6)] + [f"dir h{h}" for h in range(1, 6)], per_step))


if __name__ == "__main__":
    main()
