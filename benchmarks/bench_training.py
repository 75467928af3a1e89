"""Training throughput (windows/s) on CPU for every cell and mode, on the development data.

Data: the dev OHLC file, loaded with forecaster.data.validate.read_ohlc_file + validate_ohlc and cut
with forecaster.run.steps.split_windows (T=60, H=5); batches come from the library's
WindowSet.tensors, so gathering and scaling the windows is inside the timed loop.

Per config, a fresh model (seed 42) runs `--warmup` untimed steps, then the steps covering
`--measure-windows` windows are timed: the same step as forecaster.model.fit.fit (tensors ->
learning_rate -> forward with teacher forcing -> pinball loss -> backward -> clip -> AdamW
step -> float(loss)). Configs are interleaved (A B C ... A B C ...) for `--rounds` rounds;
the median and the best run are reported, with each run's CPU use (process CPU seconds /
wall seconds / threads; well below 100% means other processes starved the run). A last
interleaved pass calls forecaster.model.fit.fit itself (epochs=1, max_batches_per_epoch =
warm-up + timed steps, validation on 1,024 windows) as an end-to-end cross-check: its
windows/s includes model build, warm-up and validation.

    .venv/bin/python benchmarks/bench_training.py [--data PATH --threads 2 --rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _common import DEFAULT_DATA, DEFAULT_PEERS_RESULTS, emit, emit_machine, load1, table

from forecaster.config import DataConfig, ModelConfig, TrainConfig
from forecaster.data.validate import read_ohlc_file, validate_ohlc
from forecaster.model.feed import WindowSet
from forecaster.model.fit import fit, learning_rate, train_step
from forecaster.model.networks import build_model
from forecaster.run.steps import split_windows

log = logging.getLogger("bench_training")
SEED = 42


def measure(
    model_config: ModelConfig, train_config: TrainConfig, train: WindowSet, warmup: int, measure_windows: int
) -> dict[str, float]:
    """Steady-state windows/s of the fit step; also the share of time spent building batches."""
    device = torch.device("cpu")
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    model = build_model(model_config, train.horizon).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    batch = train_config.batch_size
    timed_steps = math.ceil(measure_windows / batch)
    total = warmup + timed_steps
    order = rng.permutation(len(train))
    data_s = 0.0
    started = cpu_started = 0.0
    windows = 0
    for step in range(total):
        if step == warmup:
            started, cpu_started, data_s, windows = time.perf_counter(), time.process_time(), 0.0, 0
        idx = order[(step * batch) % len(order) :][:batch]
        t0 = time.perf_counter()
        batch = train.tensors(idx, device)
        data_s += time.perf_counter() - t0
        train_step(
            model, optimizer, batch, learning_rate(step, total, train_config), model_config, train_config, device
        )
        windows += len(idx)
    seconds = time.perf_counter() - started
    cpu_util = (time.process_time() - cpu_started) / seconds / torch.get_num_threads()
    return {
        "windows_per_s": windows / seconds,
        "data_share": data_s / seconds,
        "seconds": seconds,
        "cpu_util": cpu_util,
        "params": float(sum(p.numel() for p in model.parameters())),
    }


def fit_check(
    model_config: ModelConfig,
    train_config: TrainConfig,
    train: WindowSet,
    val: WindowSet,
    warmup: int,
    measure_windows: int,
) -> float:
    """windows/s reported by forecaster.model.fit.fit for one short epoch (validation included)."""
    steps = warmup + math.ceil(measure_windows / train_config.batch_size)
    config = train_config.model_copy(update={"epochs": 1, "max_batches_per_epoch": steps})
    result = fit(model_config, config, train, val)
    return result.history[0].windows_per_s


def peer_rows(path: Path) -> list[list[str]]:
    """(model, H, steps, train s, windows/s, load) rows of the peers' RESULTS.md table."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 12 and re.fullmatch(r"\d+", cells[9] or "") and cells[0].startswith(("darts", "nf")):
            rows.append([cells[0], cells[1], cells[8], cells[7], cells[9], cells[12] if len(cells) > 12 else ""])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--peers-results", type=Path, default=DEFAULT_PEERS_RESULTS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    ap.add_argument("--measure-windows", type=int, default=60 * 256, help="windows per timed run (60 batches of 256)")
    ap.add_argument("--arches", default="lstm,gru,rnn")
    ap.add_argument("--no-fit-check", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    load_start = load1()

    T, H = 60, 5
    started = time.perf_counter()
    frame = validate_ohlc(read_ohlc_file(args.data), min_rows=T + H)
    windows = split_windows(frame, DataConfig(lookback=T, horizon=H))
    load_s = time.perf_counter() - started
    val_small = WindowSet(windows.panel, windows.val.origins[:1024], T, H, windows.val.transform)
    train_config = TrainConfig(device="cpu", seed=SEED)

    configs: list[tuple[str, ModelConfig, TrainConfig]] = []
    for mode in ("n-to-1", "seq2seq"):
        for arch in args.arches.split(","):
            configs.append((f"{arch} {mode} b256", ModelConfig(arch=arch, mode=mode), train_config))
    for arch in ("lstm", "gru"):  # the peers' batch size, for a like-for-like figure
        configs.append(
            (f"{arch} n-to-1 b64", ModelConfig(arch=arch), train_config.model_copy(update={"batch_size": 64}))
        )

    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in configs}
    loads = [load1()]
    for r in range(args.rounds):
        for name, mc, tc in configs:
            out = measure(mc, tc, windows.train, args.warmup, args.measure_windows)
            runs[name].append(out)
            log.info(
                "round %d %s: %.0f windows/s (data %.0f%%, cpu %.0f%%, load %.2f)",
                r + 1,
                name,
                out["windows_per_s"],
                100 * out["data_share"],
                100 * out["cpu_util"],
                load1(),
            )
        loads.append(load1())
    fit_wps: dict[str, float] = {}
    if not args.no_fit_check:
        for name, mc, tc in configs:
            fit_wps[name] = fit_check(mc, tc, windows.train, val_small, args.warmup, args.measure_windows)
            log.info("fit() %s: %.0f windows/s", name, fit_wps[name])
        loads.append(load1())
    load_end = load1()

    emit(
        f"# bench_training: dev data, T={T}, H={H}, hidden 64 x 2 layers, quantiles 0.1/0.5/0.9, CPU, "
        f"{torch.get_num_threads()} torch threads"
    )
    emit_machine(load_start)
    emit(
        f"data: {args.data.name}: {len(frame):,} rows, {frame['ticker'].nunique()} tickers; "
        f"{len(windows.train):,} training windows; load + validate + split_windows {load_s:.1f} s"
    )
    emit(
        f"timed: {args.warmup} warm-up steps, then {args.measure_windows:,} windows per run; "
        f"{args.rounds} interleaved rounds; 1-min load after each round: " + ", ".join(f"{v:.2f}" for v in loads)
    )
    emit()
    rows = []
    lstm = {}
    for name, mc, tc in configs:
        wps = [o["windows_per_s"] for o in runs[name]]
        med = statistics.median(wps)
        lstm.setdefault((mc.mode, tc.batch_size), med if mc.arch == "lstm" else None)
        base = lstm.get((mc.mode, tc.batch_size))
        rows.append(
            [
                mc.arch,
                mc.mode,
                tc.batch_size,
                f"{int(runs[name][0]['params']):,}",
                f"{med:,.0f}",
                f"{max(wps):,.0f}",
                " / ".join(f"{w:,.0f} ({o['cpu_util'] * 100:.0f}%)" for w, o in zip(wps, runs[name], strict=True)),
                f"{statistics.median(o['data_share'] for o in runs[name]) * 100:.0f}%",
                f"{med / base:.2f}" if base else "",
                f"{fit_wps[name]:,.0f}" if name in fit_wps else "n/a",
            ]
        )
    emit(
        table(
            [
                "arch",
                "mode",
                "batch",
                "params",
                "windows/s median",
                "best",
                "per round (CPU use)",
                "batch prep share",
                "vs LSTM same mode",
                "fit() 1 short epoch, windows/s",
            ],
            rows,
        )
    )
    emit()
    peers = peer_rows(args.peers_results)
    if peers:
        emit(
            f"Peers, **measured in another session** ({args.peers_results}; batch 64; windows/s = windows seen / "
            "whole fit() wall time, validation and Lightning setup included):"
        )
        emit()
        emit(table(["peer model", "H", "steps", "train s", "windows/s", "load 1m"], peers))
    emit(f"load average (1 min) at end: {load_end:.2f}")


if __name__ == "__main__":
    main()
