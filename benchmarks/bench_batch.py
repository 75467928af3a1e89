"""Offline batch scoring (forecaster.model.batch, `forecaster predict`): end to end and its forecast phase.

Synthetic random-walk OHLC (fixed seed): --tickers series x --bars business days, written as one
parquet file in a temporary folder. The model is the shipped default configuration (DataConfig()
and ModelConfig(): lookback 120, the last 60 bars encoded, GRU 32, horizon 5, every network
level) with random weights: the time of a forward pass does not depend on what was learned.

(e2e) end to end, what `forecaster predict` does after loading the model, phase by phase:
    read       data.read_ohlc_path (parquet)
    validate   data.validate_ohlc (every rule of the tidy frame)
    window     Panel.from_frame + each ticker's last bar (index arithmetic, no loop over tickers)
    forecast   windows gathered and checked per batch + Forecaster.predict (features, network,
               calibration, prices), `workers` batches in flight
    calendar   forecaster.data.calendar for each distinct last date
    table      the long table
    write      batch.write_forecasts (parquet, atomic)
(fp) the forecast phase beside a bare forward pass of the same network at the same batch size and
    the same threads (model(x, s) on feature tensors computed beforehand), and the parts of the
    forecast phase timed alone: features (WindowTransform.features), network (= bare), the rest
    (calibration, prices, gather, price check) by difference.

Thread layouts compared (rounds interleave them; medians reported): torch's own intra-op threads
(``threads=N, workers=1``) and one torch thread per worker thread (``threads=1, workers=N``, the
CLI's default on a CPU), N = the cores this process may use. Wall and process CPU seconds are both
reported: on a shared machine the CPU seconds are the steadier figure.

    .venv/bin/python benchmarks/bench_batch.py [--tickers 20000 --bars 130 --batch-size 8192 --rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from _common import LoadSampler, emit, emit_machine, load1, random_walk_bars, table, timed

from forecaster.config import DataConfig, ModelConfig
from forecaster.data.calendar import DEFAULT_EXCHANGE, next_sessions
from forecaster.data.validate import read_ohlc_path, validate_ohlc
from forecaster.data.windows import Panel
from forecaster.model.artifact import load_bundle, save_bundle
from forecaster.model.batch import default_workers, forecast_panel, last_bars, write_forecasts
from forecaster.model.networks import build_model
from forecaster.model.predictor import Forecaster
from forecaster.model.scaling import WindowTransform

log = logging.getLogger("bench_batch")
GOAL_SERIES_PER_S = 5000
GOAL_RATIO = 0.90


def synthetic_file(folder: Path, n_tickers: int, n_bars: int, seed: int) -> Path:
    """One parquet file of valid bars, sorted by ticker then date."""
    path = folder / "bars.parquet"
    random_walk_bars(n_tickers, n_bars, seed).to_parquet(path, index=False)
    return path


def default_forecaster(folder: Path, seed: int) -> Forecaster:
    data, config = DataConfig(), ModelConfig()
    torch.manual_seed(seed)
    network = build_model(config, data.horizon)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))  # not the untrained all-zero head
    path = save_bundle(folder / "bundle", network, config, data, WindowTransform.for_data(data))
    return Forecaster(load_bundle(path), device="cpu")


class Clock:
    """Wall and process CPU seconds of one call."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __call__(self, fn: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        self.wall, self.cpu = time.perf_counter() - wall, time.process_time() - cpu
        return out


def in_batches(fn: Callable[[Any], Any], items: list[Any], workers: int) -> list[Any]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickers", type=int, default=20_000)
    parser.add_argument("--bars", type=int, default=130)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("forecaster").setLevel(logging.ERROR)  # split-looking jumps of random data: not news
    load_before = load1()
    cores = default_workers(torch.device("cpu"))
    layouts = [(cores, 1), (1, cores)]  # (torch threads, worker threads)
    B = args.batch_size

    with tempfile.TemporaryDirectory() as tmp, LoadSampler() as load:
        folder = Path(tmp)
        path = synthetic_file(folder, args.tickers, args.bars, args.seed)
        model = default_forecaster(folder, args.seed)
        L = model.lookback
        clock = Clock()
        io: dict[str, list[tuple[float, float]]] = {"read": [], "validate": [], "window": []}
        frame = pd.DataFrame()
        for r in range(args.rounds):
            raw = clock(lambda: read_ohlc_path(path))
            io["read"].append((clock.wall, clock.cpu))
            if r == 0 or io["validate"][0][0] < 60:  # at minutes per round, one round is enough to see it
                frame = clock(lambda raw=raw: validate_ohlc(raw))
                io["validate"].append((clock.wall, clock.cpu))
            panel = clock(lambda frame=frame: Panel.from_frame(frame))  # the window phase's main cost, alone
            io["window"].append((clock.wall, clock.cpu))
            log.info("round %d: read, validate, panel %s", r + 1, [f"{v[-1][0]:.2f}s" for v in io.values()])
        rows, counts = last_bars(panel)
        X = panel.gather(rows[counts >= L], L, 0).X
        chunks = [X[i : i + B] for i in range(0, len(X), B)]
        features = [model.transform.features(c) for c in chunks]
        tensors = [(torch.from_numpy(f.seq), torch.from_numpy(f.scalars)) for f in features]

        def bare(pair: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
            with torch.inference_mode():
                return model.model(*pair).float().numpy()

        calendar_s, _ = timed(lambda: next_sessions(DEFAULT_EXCHANGE, dt.date(2024, 6, 28), model.horizon))
        for threads, workers in layouts:  # one-time costs (torch's kernels, buffers) outside the timings
            torch.set_num_threads(threads)
            in_batches(bare, tensors[:1], workers)
            in_batches(lambda c: model.predict_windows(c, batch_size=B), chunks[:1], workers)
        results: dict[tuple[int, int], dict[str, list[tuple[float, float]]]] = {}
        for r in range(args.rounds):
            for threads, workers in layouts:
                torch.set_num_threads(threads)
                got = results.setdefault((threads, workers), {})
                batch = clock(lambda w=workers: forecast_panel(model, frame, batch_size=B, workers=w))
                got.setdefault("panel", []).append((clock.wall, clock.cpu))
                for phase, seconds in batch.timings.items():
                    got.setdefault(phase, []).append((seconds, float("nan")))
                clock(lambda b=batch: write_forecasts(b.table, folder / "forecasts.parquet"))
                got.setdefault("write", []).append((clock.wall, clock.cpu))
                clock(lambda w=workers: in_batches(bare, tensors, w))
                got.setdefault("bare", []).append((clock.wall, clock.cpu))
                clock(lambda w=workers: in_batches(lambda c: model.predict_windows(c, batch_size=B), chunks, w))
                got.setdefault("predict", []).append((clock.wall, clock.cpu))
                clock(lambda w=workers: in_batches(model.transform.features, chunks, w))
                got.setdefault("features", []).append((clock.wall, clock.cpu))
                log.info(
                    "round %d, threads %d workers %d: forecast %.2fs, bare %.2fs, features %.2fs, load %.2f",
                    r + 1,
                    threads,
                    workers,
                    got["forecast"][-1][0],
                    got["bare"][-1][0],
                    got["features"][-1][0],
                    load1(),
                )
        torch.set_num_threads(cores)

    def med(values: list[tuple[float, float]], i: int = 0) -> float:
        return statistics.median(v[i] for v in values)

    S, H = len(X), model.horizon
    emit(f"# Batch scoring: {args.tickers:,} tickers x {args.bars} bars, batch {B}, {args.rounds} round(s)\n")
    emit_machine(load_before)
    emit(f"load average (1 min) while running: {load.summary()}\n")
    emit(f"series forecast per run: {S:,} ({S * H:,} rows); lookback {L}, horizon {H}, cores {cores}\n")
    emit(f"building the {DEFAULT_EXCHANGE} calendar (once per process, not in the tables): {calendar_s:.2f}s\n")
    emit("Read, validate, Panel.from_frame (the same for every layout; median wall / CPU seconds):\n")
    emit(
        table(
            ["phase", "wall s", "CPU s", "series/s (wall)", "series per CPU-s"],
            [
                [k, f"{med(v):.2f}", f"{med(v, 1):.2f}", f"{S / med(v):,.0f}", f"{S / med(v, 1):,.0f}"]
                for k, v in io.items()
            ],
        )
    )
    rows_e2e, rows_fp = [], []
    read_validate = [med(io[k]) for k in ("read", "validate")]
    read_validate_cpu = [med(io[k], 1) for k in ("read", "validate")]
    for (threads, workers), got in results.items():
        name = f"threads {threads}, workers {workers}"
        phases = {k: med(got[k]) for k in ("window", "forecast", "calendar", "table", "write")}
        total = sum(read_validate) + sum(phases.values())
        cpu = sum(read_validate_cpu) + med(got["panel"], 1) + med(got["write"], 1)
        rows_e2e.append(
            [
                name,
                *(f"{s:.2f}" for s in read_validate),
                *(f"{s:.2f}" for s in phases.values()),
                f"{total:.2f}",
                f"{S / total:,.0f}",
                f"{S / (total - read_validate[1]):,.0f}",
                f"{cpu:.2f}",
                f"{S / (cpu - read_validate_cpu[1]):,.0f}",
            ]
        )
        forecast, bare, feats, predict = (med(got[k]) for k in ("forecast", "bare", "features", "predict"))
        cpus = {k: med(got[k], 1) for k in ("bare", "features", "predict")}
        rows_fp.append(
            [
                name,
                f"{forecast:.2f}",
                f"{predict:.2f} ({cpus['predict']:.2f})",
                f"{bare:.2f} ({cpus['bare']:.2f})",
                f"{feats:.2f} ({cpus['features']:.2f})",
                f"{bare / forecast:.2f}",
                f"{bare / predict:.2f}",
                f"{cpus['bare'] / cpus['predict']:.2f}",
            ]
        )
    emit("\nEnd to end (median wall seconds per phase, as forecast_panel times them; CPU seconds of the whole):\n")
    emit(
        table(
            [
                "layout",
                "read",
                "validate",
                "window",
                "forecast",
                "calendar",
                "table",
                "write",
                "total",
                "series/s",
                "series/s w/o validate",
                "CPU s",
                "series per CPU-s w/o validate",
            ],
            rows_e2e,
        )
    )
    emit(f"\ngoal: >= {GOAL_SERIES_PER_S:,} series/s end to end\n")
    emit("Forecast phase beside a bare forward pass (wall seconds, CPU seconds in brackets):\n")
    emit(
        table(
            [
                "layout",
                "forecast phase (in forecast_panel)",
                "predict alone",
                "bare forward",
                "features alone",
                "bare / forecast phase (wall)",
                "bare / predict (wall)",
                "bare / predict (CPU)",
            ],
            rows_fp,
        )
    )
    emit(f"\ngoal: forecast phase >= {GOAL_RATIO:.0%} of the bare forward pass's throughput")
    emit(f"load average (1 min) at end: {load1():.2f}; pid {os.getpid()}")


if __name__ == "__main__":
    main()
