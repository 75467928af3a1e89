"""The CPU against an accelerator in one run: training (`forecaster.model.fit.fit`) and batch scoring
(`forecaster.model.batch.forecast_panel`) of the default network, side by side (issue 10's GPU goal:
>= 10x the CPU's throughput, windows resident on the device).

Synthetic random-walk bars (`_common.random_walk_bars`, fixed seed), so it runs where the
development data is not (a lent GPU machine gets only this repository). The network is the
shipped default (DataConfig(), ModelConfig(): GRU 32, lookback 120, the last 20 bars encoded,
horizon 5, every network level).

(train) fit() for 2 epochs of --batches steps each, validation on 1,024 windows, at each batch size
    of --batch-sizes, on the CPU (--cpu-threads torch threads) and on --device (data on the device:
    TrainConfig.data_on auto); windows/s of the second epoch as fit's own history reports it (the
    first pays for CUDA's start-up and kernel choice), and its training loss: the same seed gives
    the same batches on both, so the two losses should agree to a few digits (bf16 on CUDA).
(score) forecast_panel over --score-tickers tickers x 130 bars on each device (batch 8192; the CPU as
    the CLI runs it on --cpu-threads cores: that many workers of one torch thread; 1 worker on
    CUDA): series/s of its forecast phase, and a bare forward pass of the same network on the same
    device over the same batches with the same workers (features computed beforehand, tensors
    already there), the phase's share of it.

    .venv/bin/python benchmarks/bench_device.py --device cuda    # where a GPU is visible
    .venv/bin/python benchmarks/bench_device.py --device cpu --batches 20 --score-tickers 4000
                                                                 # a smoke run: both sides on the CPU
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from _common import emit, emit_machine, library_version, load1, random_walk_bars, table

from forecaster.config import DataConfig, ModelConfig, TrainConfig
from forecaster.data.validate import validate_ohlc
from forecaster.data.windows import Panel
from forecaster.model.artifact import load_bundle, save_bundle
from forecaster.model.batch import BATCH_SIZE, default_workers, forecast_panel, last_bars
from forecaster.model.device import autocast, resolve_device
from forecaster.model.feed import WindowSet
from forecaster.model.fit import fit
from forecaster.model.networks import build_model
from forecaster.model.predictor import Forecaster
from forecaster.model.scaling import WindowTransform
from forecaster.run.steps import split_windows

log = logging.getLogger("bench_device")
GOAL_SPEEDUP = 10.0
SEED = 42
SCORE_BARS = 130


def train_side(device: str, batch_size: int, windows: WindowSet, val: WindowSet, batches: int, threads: int) -> dict:
    config = TrainConfig(
        device=device,
        seed=SEED,
        epochs=2,
        patience=2,
        batch_size=batch_size,
        max_batches_per_epoch=batches,
        threads=threads,
    )
    result = fit(ModelConfig(), config, windows, val)
    second = result.history[-1]
    return {"windows_per_s": second.windows_per_s, "train_loss": second.train_loss, "device": result.device}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def score_side(bundle_path: Path, frame, device: str, cpu_cores: int, rounds: int) -> dict:
    """The CPU as the CLI runs it on a machine of `cpu_cores` cores (one worker per core, one torch
    thread each), whatever this host has; an accelerator with the CLI's default (1 worker)."""
    forecaster = Forecaster(load_bundle(bundle_path), device=device)
    dev = forecaster.device
    workers = cpu_cores if dev.type == "cpu" else default_workers(dev)
    torch.set_num_threads(1)
    panel = Panel.from_frame(frame)
    rows, counts = last_bars(panel)
    X = panel.gather(rows[counts >= forecaster.lookback], forecaster.lookback, 0).X
    chunks = [X[i : i + BATCH_SIZE] for i in range(0, len(X), BATCH_SIZE)]
    tensors = []
    for chunk in chunks:
        f = forecaster.transform.features(chunk)
        tensors.append((torch.from_numpy(f.seq).to(dev), torch.from_numpy(f.scalars).to(dev)))

    def forward(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
        with torch.inference_mode(), autocast(dev):
            forecaster.model(*pair).float().cpu()

    def bare() -> None:
        with ThreadPoolExecutor(max_workers=workers) as pool:  # `workers` batches in flight, as in the phase
            list(pool.map(forward, tensors))
        synchronize(dev)

    forecast_panel(forecaster, frame, workers=workers)  # warm-up: kernels, buffers, the calendar
    bare()
    phase, bare_s = [], []
    for _ in range(rounds):
        phase.append(forecast_panel(forecaster, frame, workers=workers).timings["forecast"])
        started = time.perf_counter()
        bare()
        bare_s.append(time.perf_counter() - started)
    return {
        "series": len(X),
        "phase_s": statistics.median(phase),
        "bare_s": statistics.median(bare_s),
        "workers": workers,
        "device": str(dev),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="the accelerator to compare with the CPU (cuda, cuda:N, cpu)")
    ap.add_argument(
        "--cpu-threads", type=int, default=2, help="cores of the CPU side (2: the dev machine), whatever this host has"
    )
    ap.add_argument("--tickers", type=int, default=400, help="training panel: tickers x --bars")
    ap.add_argument("--bars", type=int, default=1500)
    ap.add_argument("--batches", type=int, default=100, help="steps per training epoch")
    ap.add_argument("--batch-sizes", default="512,4096", help="512: the default TrainConfig; larger suits a GPU")
    ap.add_argument("--score-tickers", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5, help="scoring rounds (medians reported)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("forecaster").setLevel(logging.ERROR)  # split-looking jumps of random data: not news
    load_start = load1()
    try:
        target = str(resolve_device(args.device))
    except ValueError as exc:  # no such device visible here
        raise SystemExit(f"bench_device: {exc}") from None
    data = DataConfig()

    started = time.perf_counter()
    frame = validate_ohlc(random_walk_bars(args.tickers, args.bars, SEED))
    windows = split_windows(frame, data)
    val = WindowSet(windows.panel, windows.val.origins[:1024], data.lookback, data.horizon, windows.val.transform)
    windows.train.arrays  # the scaled inputs, cached once for every fit below  # noqa: B018
    log.info("training panel: %d windows, prepared in %.1f s", len(windows.train), time.perf_counter() - started)

    train_rows = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        sides = {}
        for side, device in (("cpu", "cpu"), ("device", target)):  # "device" may be the CPU too (a smoke run)
            sides[side] = train_side(device, batch_size, windows.train, val, args.batches, args.cpu_threads)
            log.info("train batch %d on %s: %.0f windows/s", batch_size, device, sides[side]["windows_per_s"])
        cpu, acc = sides["cpu"], sides["device"]
        train_rows.append(
            [
                batch_size,
                f"{cpu['windows_per_s']:,.0f}",
                f"{acc['windows_per_s']:,.0f} ({acc['device']})",
                f"**{acc['windows_per_s'] / cpu['windows_per_s']:.1f}x**",
                f"{cpu['train_loss']:.5f} / {acc['train_loss']:.5f}",
            ]
        )

    score_frame = validate_ohlc(random_walk_bars(args.score_tickers, SCORE_BARS, SEED + 1))
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(SEED)
        network = build_model(ModelConfig(), data.horizon)
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))  # not the untrained all-zero head
        transform = WindowTransform.for_data(data)
        path = save_bundle(Path(tmp) / "bundle", network, ModelConfig(), data, transform)
        scores = {
            side: score_side(path, score_frame, device, args.cpu_threads, args.rounds)
            for side, device in (("cpu", "cpu"), ("device", target))
        }
    score_rows = []
    for s in scores.values():
        score_rows.append(
            [
                f"{s['device']} (workers {s['workers']}, torch threads {s['threads']})",
                f"{s['phase_s']:.3f}",
                f"{s['series'] / s['phase_s']:,.0f}",
                f"{s['bare_s']:.3f}",
                f"{s['bare_s'] / s['phase_s']:.2f}",
            ]
        )
    speedup = scores["cpu"]["phase_s"] / scores["device"]["phase_s"]

    emit(f"# bench_device: the CPU against {target}, one run")
    emit_machine(load_start)
    emit(f"library: {library_version()}; load average (1 min) at end: {load1():.2f}")
    emit(
        f"training: {args.tickers} synthetic tickers x {args.bars} bars, {len(windows.train):,} windows; "
        f"2 epochs of {args.batches} steps each, validation on {len(val):,} windows; the CPU side with "
        f"{args.cpu_threads} torch threads\n"
    )
    emit(
        table(
            ["batch", "CPU windows/s", "device windows/s", "device / CPU", "epoch-2 train loss CPU / device"],
            train_rows,
        )
    )
    emit(f"\nbatch scoring: {scores['cpu']['series']:,} series, batch {BATCH_SIZE}, medians of {args.rounds}\n")
    emit(table(["device", "forecast phase s", "series/s", "bare forward s", "bare / phase"], score_rows))
    emit(
        f"\ngoal: >= {GOAL_SPEEDUP:.0f}x the CPU's throughput: training "
        + ", ".join(f"batch {r[0]} {r[3].strip('*')}" for r in train_rows)
        + f"; batch scoring's forecast phase {speedup:.1f}x"
    )


if __name__ == "__main__":
    main()
