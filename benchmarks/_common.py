"""Helpers shared by the benchmark scripts: output, machine facts, load average, timing, synthetic bars."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "dev_ohlcv.csv.gz"
DEFAULT_PEERS_RESULTS = REPO_ROOT.parent / "shared" / "peers" / "RESULTS.md"


def emit(text: str = "") -> None:
    """Benchmark output goes to stdout as markdown (the library itself never prints)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def load1() -> float:
    """The machine's 1-minute load average."""
    return os.getloadavg()[0]


def machine() -> dict[str, str]:
    """nproc, CPU model, RAM, python/numpy/pandas/torch versions and the date."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except OSError:
        pass
    info = {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
    }
    for name in ("numpy", "pandas", "torch"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = "not installed"
    return info


def emit_machine(load_before: float | None = None) -> None:
    info = machine()
    emit("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if load_before is not None:
        emit(f"load average (1 min) at start: {load_before:.2f}")


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall seconds of one call, and its result."""
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:,.1f} MB"


class LoadSampler:
    """The 1-minute load average sampled every `every` seconds in a background thread, so a
    long timing carries the load it ran under (start, mean, max, end), not one reading."""

    def __init__(self, every: float = 15.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(load1())

    def __enter__(self) -> LoadSampler:
        self.samples.append(load1())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(load1())

    def summary(self) -> str:
        s = self.samples
        return f"start {s[0]:.2f}, mean {sum(s) / len(s):.2f}, max {max(s):.2f}, end {s[-1]:.2f} ({len(s)} samples)"


def library_version() -> str:
    """The commit of the working tree, and whether forecaster/ had uncommitted edits when read
    (several people edit this tree at once: a figure belongs to the code it ran on)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    sha = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = git("status", "--porcelain", "--", "forecaster").strip()
    return f"commit {sha}" + (" + uncommitted edits in forecaster/" if dirty else " (forecaster/ clean)")


def random_walk_bars(
    n_tickers: int, n_days: int, seed: int, drift: float = 0.0, end: str = "2024-06-28"
) -> pd.DataFrame:
    """A tidy frame of valid daily bars (date, ticker, open, high, low, close) sorted by ticker then
    date: a log random walk of 1.5% a day per ticker from a price in 10..300, opens gapping 0.5%
    from the previous close, highs and lows beyond both by ~1%, business days ending at `end`."""
    rng = np.random.default_rng(seed)
    log_close = np.log(rng.uniform(10, 300, (n_tickers, 1))) + np.cumsum(
        rng.normal(drift, 0.015, (n_tickers, n_days)), 1
    )
    close = np.exp(log_close)
    open_ = np.concatenate([close[:, :1], close[:, :-1]], axis=1) * np.exp(rng.normal(0, 0.005, close.shape))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, close.shape)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, close.shape)))
    width = len(str(max(n_tickers - 1, 0)))
    return pd.DataFrame(
        {
            "date": np.tile(pd.bdate_range(end=end, periods=n_days).values, n_tickers),
            "ticker": np.repeat([f"T{i:0{width}d}" for i in range(n_tickers)], n_days),
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
        }
    )
