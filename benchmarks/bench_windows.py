"""Windowing: forecaster.data.windows (zero-copy views / Panel gather) against a per-window pandas loop.

Synthetic random-walk OHLC (fixed seed), S tickers x L days, lookback T, horizon H.

(a) ours
    a1  make_windows on every ticker's float32 [L,4] array: all windows as views
    a2  Panel.from_frame(frame) + Panel.origins(T, H) + gather of one batch of 256
    a3  a2, then gather of *every* window in batches of 256 (each window copied once,
        the work a training epoch does; the fair match for the pandas loop, which
        materialises every window)
(b) pandas: for each ticker frame, for each window i:
        frame.iloc[i:i+T][['open','high','low','close']].to_numpy()
        frame['close'].iloc[i+T:i+T+H].to_numpy()
    timed on --pandas-tickers tickers only and extrapolated linearly to all S tickers
    (every ticker has the same number of windows, so the cost per window is the same).

Rounds interleave a1, a2, a3, b; medians are reported. Memory is measured in a separate,
untimed pass with tracemalloc (numpy reports its buffers to tracemalloc).

    .venv/bin/python benchmarks/bench_windows.py [--tickers 500 --days 1260 --pandas-tickers 10]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tracemalloc

import numpy as np
import pandas as pd
from _common import emit, emit_machine, load1, mb, random_walk_bars, table, timed

from forecaster.config import FEATURES
from forecaster.data.windows import Panel, Windows, make_windows

log = logging.getLogger("bench_windows")
BATCH = 256


def synthetic_ohlc(n_tickers: int, n_days: int, seed: int) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """A tidy frame sorted by ticker then date, and each ticker's float32 [L,4] array."""
    frame = random_walk_bars(n_tickers, n_days, seed, drift=0.0002)
    values = frame[["open", "high", "low", "close"]].to_numpy(dtype=np.float32).reshape(n_tickers, n_days, 4)
    return frame, list(values)


def ours_views(series: list[np.ndarray], T: int, H: int) -> list[Windows]:
    return [make_windows(s, T, H) for s in series]


def ours_panel(frame: pd.DataFrame, T: int, H: int, rng: np.random.Generator) -> tuple[Panel, np.ndarray, Windows]:
    panel = Panel.from_frame(frame)
    origins = panel.origins(T, H, need_future=True)
    batch = panel.gather(rng.choice(origins, BATCH, replace=False), T, H)
    return panel, origins, batch


def ours_gather_all(frame: pd.DataFrame, T: int, H: int, rng: np.random.Generator) -> int:
    panel = Panel.from_frame(frame)
    origins = panel.origins(T, H, need_future=True)
    order = rng.permutation(origins)
    copied = 0
    for start in range(0, len(order), BATCH):
        w = panel.gather(order[start : start + BATCH], T, H)
        copied += w.X.shape[0]
    return copied


def pandas_loop(frames: list[pd.DataFrame], T: int, H: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for frame in frames:
        n = len(frame) - T - H + 1
        for i in range(n):
            x = frame.iloc[i : i + T][["open", "high", "low", "close"]].to_numpy()
            y = frame["close"].iloc[i + T : i + T + H].to_numpy()
            out.append((x, y))
    return out


def traced(fn):  # type: ignore[no-untyped-def]
    """(result, bytes still held after the call, peak bytes during it) under tracemalloc."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    out = fn()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, current - base, peak - base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tickers", type=int, default=500)
    ap.add_argument("--days", type=int, default=1260)
    ap.add_argument("--lookback", type=int, default=60)
    ap.add_argument("--horizon", type=int, default=5)
    ap.add_argument("--pandas-tickers", type=int, default=10, help="tickers the pandas loop is timed on")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    T, H, S, P = args.lookback, args.horizon, args.tickers, args.pandas_tickers
    load_start = load1()

    frame, series = synthetic_ohlc(S, args.days, args.seed)
    per_ticker = args.days - T - H + 1
    n_windows = S * per_ticker
    first = frame[frame["ticker"].isin(frame["ticker"].unique()[:P])]
    sub_frames = [g.reset_index(drop=True) for _, g in first.groupby("ticker")]
    log.info("data: %d tickers x %d days, %d windows (%d per ticker)", S, args.days, n_windows, per_ticker)

    # correctness: the pandas loop and make_windows give the same numbers
    check = pandas_loop(sub_frames[:1], T, H)
    pandas_views = np.shares_memory(check[0][0], sub_frames[0][list(FEATURES)].to_numpy())
    w0 = make_windows(series[0], T, H)
    assert len(check) == len(w0.X) == per_ticker
    assert all(
        np.array_equal(x.astype(np.float32), w0.X[i]) and np.array_equal(y.astype(np.float32), w0.Y[i])
        for i, (x, y) in enumerate(check)
    )
    panel, origins, _ = ours_panel(frame, T, H, np.random.default_rng(0))
    assert len(origins) == n_windows
    g = panel.gather(origins[:per_ticker], T, H)
    assert np.array_equal(g.X, w0.X) and np.array_equal(g.Y, w0.Y)
    del check, panel, origins, g

    times: dict[str, list[float]] = {"a1": [], "a2": [], "a3": [], "b": []}
    for r in range(args.rounds):
        rng = np.random.default_rng(r)
        times["a1"].append(timed(lambda: ours_views(series, T, H))[0])
        times["a2"].append(timed(lambda: ours_panel(frame, T, H, rng))[0])  # noqa: B023 (called at once)
        times["a3"].append(timed(lambda: ours_gather_all(frame, T, H, rng))[0])  # noqa: B023
        times["b"].append(timed(lambda: pandas_loop(sub_frames, T, H))[0])
        log.info("round %d: %s", r + 1, {k: round(v[-1], 4) for k, v in times.items()})
    med = {k: statistics.median(v) for k, v in times.items()}
    pandas_total = med["b"] * S / P

    # memory, untimed
    views, views_held, views_peak = traced(lambda: ours_views(series, T, H))
    shares = all(np.shares_memory(w.X, s) and np.shares_memory(w.Y, s) for w, s in zip(views, series, strict=True))
    view_bytes = sum(w.X.nbytes + w.Y.nbytes for w in views)
    (panel, origins, batch), panel_held, panel_peak = traced(lambda: ours_panel(frame, T, H, np.random.default_rng(0)))
    _, _, gather_all_peak = traced(lambda: ours_gather_all(frame, T, H, np.random.default_rng(0)))
    mem_tickers = min(P, 2)
    sub_out, pandas_held, _ = traced(lambda: pandas_loop(sub_frames[:mem_tickers], T, H))
    pandas_per_window = pandas_held / len(sub_out)
    del sub_out
    data_f32 = sum(s.nbytes for s in series)
    sweep = []  # held bytes against the lookback: flat for ours, linear in T if materialised
    for t in (20, T, 4 * T):
        n_t = S * (args.days - t - H + 1)
        _, a1_held, _ = traced(lambda t=t: ours_views(series, t, H))
        _, a2_held, _ = traced(lambda t=t: ours_panel(frame, t, H, np.random.default_rng(0)))
        sweep.append([t, f"{n_t:,}", mb(a1_held), mb(a2_held), mb(n_t * t * 4 * 4)])
    data_frame = int(frame.memory_usage(deep=True).sum())
    materialised = n_windows * T * 4 * 4
    load_end = load1()

    emit(f"# bench_windows: {S} tickers x {args.days} days, T={T}, H={H}, {n_windows:,} windows")
    emit_machine(load_start)
    emit()
    emit(
        f"Times: median of {args.rounds} interleaved rounds. The pandas loop was timed on {P} tickers "
        f"({P * per_ticker:,} windows) and **extrapolated linearly** x{S / P:g} to {S} tickers."
    )
    emit()
    rows = [
        ["a1 ours: make_windows per ticker (views)", med["a1"], n_windows, pandas_total / med["a1"]],
        ["a2 ours: Panel.from_frame + origins + gather(256)", med["a2"], n_windows, pandas_total / med["a2"]],
        ["a3 ours: a2 + gather every window in batches of 256", med["a3"], n_windows, pandas_total / med["a3"]],
        [f"b pandas per-window loop ({P} tickers, measured)", med["b"], P * per_ticker, None],
        [f"b pandas per-window loop ({S} tickers, extrapolated)", pandas_total, n_windows, 1.0],
    ]
    rows = [[name, f"{sec:.4f}", f"{n / sec:,.0f}", f"{ratio:,.0f}x" if ratio else ""] for name, sec, n, ratio in rows]
    emit(table(["method", "seconds", "windows/s", "speed-up vs pandas"], rows))
    emit()
    emit("all rounds (s): " + "; ".join(f"{k}: " + ", ".join(f"{v:.4f}" for v in vs) for k, vs in times.items()))
    emit()
    mem_rows = [
        ["data: float32 OHLC arrays (S x L x 4 x 4 B)", mb(data_f32)],
        ["data: the tidy pandas frame (deep)", mb(data_frame)],
        ["materialised X[N,T,4] float32 (N x T x 4 x 4 B)", mb(materialised)],
        ["a1 views: bytes allocated and held (tracemalloc)", mb(views_held)],
        ["a1 views: peak bytes during the call (tracemalloc)", mb(views_peak)],
        ["a1 views: logical nbytes of X and Y (not allocated)", mb(view_bytes)],
        ["a2 Panel + origins + 1 batch: held (tracemalloc)", mb(panel_held)],
        ["a2 Panel + origins + 1 batch: peak (tracemalloc)", mb(panel_peak)],
        ["  of which Panel.values", mb(panel.values.nbytes)],
        [
            "  of which dates + series_id + starts",
            mb(panel.dates.nbytes + panel.series_id.nbytes + panel.starts.nbytes),
        ],
        ["  of which origins (int64)", mb(origins.nbytes)],
        ["  of which one batch X[256,T,4] + Y", mb(batch.X.nbytes + batch.Y.nbytes)],
        ["a3 peak while gathering every window (tracemalloc)", mb(gather_all_peak)],
        [f"b pandas loop: held per window (measured on {mem_tickers} tickers)", f"{pandas_per_window:,.0f} B"],
        [f"b pandas loop: held for all {n_windows:,} windows (extrapolated)", mb(pandas_per_window * n_windows)],
    ]
    emit(table(["memory", "bytes"], mem_rows))
    emit()
    emit(
        table(
            ["T", "windows N", "a1 views held", "a2 Panel + origins + batch held", "materialised N x T x 4 x 4 B"],
            sweep,
        )
    )
    emit()
    emit(
        f"a1 views share memory with the input arrays: {shares}. "
        f"a1 held / data = {views_held / data_f32:.3f}; a2 held / data = {panel_held / data_f32:.2f}; "
        f"materialised / data = {materialised / data_f32:.0f} (= T x N / L)."
    )
    emit(
        f"pandas {pd.__version__}: the loop's .to_numpy() windows are read-only views of the frame's block: "
        f"{pandas_views} (copy-on-write), so its held memory is per-window object overhead, growing with N."
    )
    emit(f"load average (1 min) at end: {load_end:.2f}")


if __name__ == "__main__":
    main()
