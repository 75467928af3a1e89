"""Data-parallel training: one process vs two (DDP, gloo) on the development data, same global batch.

Data: the dev OHLC file, loaded with forecaster.data.validate.read_ohlc_file + validate_ohlc and cut with
forecaster.run.steps.split_windows at the default DataConfig. Each run is forecaster.model.fit.fit itself,
`--epochs` epochs (full, or `--max-batches` global steps each) at the default TrainConfig
(global batch 512, seed 42) on a fresh WindowSet (so every run computes its own scaled
features, as a fresh training run does):

- ``1 proc x N threads``: one process, torch using N threads (all the cores by default);
- ``1 proc x 1 thread``: the same with one thread (what each rank below gets);
- ``2 proc x 1 thread``: ``train.nproc_per_node=2``: fit starts two processes (torch.distributed,
  gloo, DistributedDataParallel), each taking 256 of every 512 windows, one thread each.

Reported per run: windows/s of every epoch as fit measures it (windows trained / epoch wall time,
validation included; epoch 1 also pays the scaled-feature computation, the 2-process runs also
pay it once per process), the whole fit's wall time (process start-up included), and the
validation loss of every epoch: the same global batch must give the same losses up to float
rounding. Runs are interleaved over `--rounds`; the 1-minute load average is recorded around each.

    .venv/bin/python benchmarks/bench_ddp.py [--data PATH --epochs 2 --rounds 1 --threads 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import torch
from _common import DEFAULT_DATA, emit, emit_machine, load1, table

from forecaster.config import DataConfig, ModelConfig, TrainConfig
from forecaster.data.validate import read_ohlc_file, validate_ohlc
from forecaster.model.feed import WindowSet
from forecaster.model.fit import FitResult, fit
from forecaster.run.steps import split_windows

log = logging.getLogger("bench_ddp")


def fresh(windows: WindowSet) -> WindowSet:
    """The same windows without the cached features (every run computes its own)."""
    return replace(windows)


def run(
    name: str, nproc: int, threads: int, train: WindowSet, val: WindowSet, config: TrainConfig
) -> tuple[FitResult, float]:
    torch.set_num_threads(threads if nproc == 1 else threads * nproc)  # run_local gives each rank its share
    started = time.perf_counter()
    result = fit(ModelConfig(), config.model_copy(update={"nproc_per_node": nproc}), fresh(train), fresh(val))
    wall = time.perf_counter() - started
    log.info(
        "%s: %s windows/s per epoch, val %s, %.1f s (load %.2f)",
        name,
        [f"{s.windows_per_s:,.0f}" for s in result.history],
        [f"{s.val_loss:.6f}" for s in result.history],
        wall,
        load1(),
    )
    return result, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of the 1-process run")
    ap.add_argument("--max-batches", type=int, default=None, help="cap on global steps per epoch (default: all)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    load_start = load1()

    data_config = DataConfig()
    started = time.perf_counter()
    frame = validate_ohlc(read_ohlc_file(args.data), min_rows=data_config.lookback + data_config.horizon)
    windows = split_windows(frame, data_config)
    load_s = time.perf_counter() - started
    config = TrainConfig(epochs=args.epochs, patience=args.epochs, device="cpu", max_batches_per_epoch=args.max_batches)
    variants = [
        (f"1 proc x {args.threads} threads", 1, args.threads),
        ("1 proc x 1 thread", 1, 1),
        ("2 proc x 1 thread (DDP, gloo)", 2, 1),
    ]
    rows, loads = [], [load1()]
    for r in range(args.rounds):
        for name, nproc, threads in variants:
            result, wall = run(name, nproc, threads, windows.train, windows.val, config)
            loads.append(load1())
            rows.append(
                [
                    r + 1,
                    name,
                    " / ".join(f"{s.windows_per_s:,.0f}" for s in result.history),
                    f"{wall:.1f}",
                    " / ".join(f"{s.val_loss:.6f}" for s in result.history),
                    f"{loads[-1]:.2f}",
                ]
            )

    emit(
        f"# bench_ddp: dev data, DataConfig defaults (lookback {data_config.lookback}, T {data_config.encoder_steps}, "
        f"H {data_config.horizon}), ModelConfig defaults, global batch {config.batch_size}, {args.epochs} epochs"
        + (f" of at most {args.max_batches} steps" if args.max_batches else "")
        + ", CPU"
    )
    emit_machine(load_start)
    emit(
        f"data: {args.data.name}: {len(frame):,} rows, {frame['ticker'].nunique()} tickers; "
        f"{len(windows.train):,} training and {len(windows.val):,} validation windows; "
        f"load + validate + split_windows {load_s:.1f} s"
    )
    emit(f"1-minute load after each run: {', '.join(f'{v:.2f}' for v in loads)}")
    emit()
    emit(
        table(
            ["round", "run", "windows/s per epoch", "fit wall s", "validation loss per epoch", "load after"],
            rows,
        )
    )
    emit(f"load average (1 min) at end: {load1():.2f}")


if __name__ == "__main__":
    main()
