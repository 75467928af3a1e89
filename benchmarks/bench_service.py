"""Serving benchmark: our FastAPI service vs `mlflow models serve`, same model, same load.

One run does everything, back to back:

1. trains the production-sized model (LSTM n-to-1, hidden 64, 2 layers, lookback 60, horizon 5,
   quantiles 0.1/0.5/0.9; 1 epoch, speed not accuracy) on the bundled sample and registers it
   as `bench@champion` in a temporary MLflow SQLite store;
2. starts our service as in production (`uvicorn service.app:app --workers 1`, uvloop, httptools,
   no access log, FORECASTER_DEVICE=cpu) and `mlflow models serve -m models:/bench@champion
   --env-manager local` (its defaults: 1 uvicorn worker, access log on);
3. checks once that both return the same median forecast for the same histories (rtol 1e-4);
4. drives each server from a separate closed-loop load generator process
   (`benchmarks/loadgen.py`) over the same real 60-bar windows of the sample:
   (a) 1 series per request at concurrency 1, (b) 1 series at concurrency 32,
   (c) 64 series per request at concurrency 4; each phase warm-up, then at most
   `--requests` requests or `--time-limit` seconds; the two servers alternate who goes first;
5. prints a markdown table and writes `benchmarks/RESULTS_service.md`; stops every server it
   started, also on error.

`--workers2` also starts `forecaster serve --workers 2` (replicated serving: two worker processes
sharing the port, metrics summed) twice, as shipped (`ours-w2`: one SO_REUSEPORT socket per worker)
and with `--shared-socket` (`ours-w2s`: one socket both accept from), and measures both in every
phase beside the one-worker service.

    .venv/bin/python benchmarks/bench_service.py            # about 3-4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOADGEN = HERE / "loadgen.py"
DEFAULT_OUT = HERE / "RESULTS_service.md"
VENV_BIN = Path(sys.executable).parent
LOOKBACK, HORIZON, BATCH_SERIES = 60, 5, 64
MODEL_NAME = "bench"
COLUMNS = ["ticker", "date", "open", "high", "low", "close"]
OHLC = COLUMNS[2:]
# Goals of issue 10 for the request path (RESULTS.md section 4).
GOAL_BATCH_SERIES_S, GOAL_C32_REQ_S, GOAL_C32_RATIO, GOAL_P99_MS = 5000.0, 600.0, 5.0, 5.0


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def load3() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


# --------------------------------------------------------------------------- model

def forward_ms(tracking_uri: str, windows: list[Window], default_threads: int) -> dict[tuple[int, int], float]:
    """In-process median ms of Forecaster.predict (scaling + forward + back to prices), keyed by
    (torch threads, windows), each in a fresh thread set to that many intra-op threads."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from forecaster.registry import tracking

    tracking.configure(tracking_uri)
    forecaster, _ = tracking.load_forecaster(f"models:/{MODEL_NAME}@champion", device="cpu")
    X = np.array([w.ohlc for w in windows], dtype=np.float32)

    def measure(n: int) -> float:
        for _ in range(3):
            forecaster.predict_windows(X[:n])
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            forecaster.predict_windows(X[:n])
            times.append(time.perf_counter() - t0)
        return float(np.median(times) * 1e3)

    out = {}
    for threads in sorted({1, default_threads}):
        with ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
            for n in (1, 32, 64):
                out[(threads, n)] = pool.submit(measure, n).result()
    return out


def stage_ms(tracking_uri: str, windows: list[Window], repeat: int = 20) -> dict[str, float]:
    """Where one 64-series request's CPU goes, in process (median ms of `repeat`): body decode,
    decode + every check (list and columnar bodies), windows, features + forward (1 torch thread),
    response encoding. The same functions the route calls, without HTTP and batching."""
    import orjson
    import torch

    from forecaster.registry import tracking
    from service.fastpath import parse_body

    tracking.configure(tracking_uri)
    forecaster, _ = tracking.load_forecaster(f"models:/{MODEL_NAME}@champion", device="cpu")
    as_list, as_columns = dumps(ours_batch(windows)).encode(), dumps(ours_batch_columnar(windows)).encode()
    parsed = parse_body(as_list)
    X = np.stack([forecaster.window(s.prices, field=s.field).values for s in parsed.series if s.prices is not None])
    q = forecaster.predict_windows(X).quantiles
    answer = {"forecasts": [{"id": s.id, "points": [{"step": h + 1, "date": "2024-01-02", "close": r[1], "lower": r[0],
                                                      "upper": r[-1], "quantiles": r} for h, r in enumerate(rows)]}
                            for s, rows in zip(parsed.series, q.tolist(), strict=True)]}
    torch.set_num_threads(1)

    def median(fn: Any) -> float:
        fn()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times) * 1e3)

    return {
        "orjson decode (list)": median(lambda: orjson.loads(as_list)),
        "decode+validate (list)": median(lambda: parse_body(as_list)),
        "decode+validate (columnar)": median(lambda: parse_body(as_columns)),
        "windows": median(lambda: [forecaster.window(s.prices, field=s.field) for s in parsed.series]),
        "features+forward": median(lambda: forecaster.predict_windows(X)),
        "encode": median(lambda: orjson.dumps(answer)),
    }


def train_and_register(tracking_uri: str, epochs: int, max_batches: int | None) -> str:
    """Train the default-size model briefly and register it as bench@champion; returns the version."""
    import torch

    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    from forecaster.config import DataConfig, ModelConfig, TrainConfig
    from forecaster.data.sources import load_source
    from forecaster.registry import tracking
    from forecaster.run.tracked import tracked_training

    frame, origin = load_source("sample")
    tracking.configure(tracking_uri)
    torch.set_num_threads(1)  # faster than 2 on a small shared machine; only the training is affected
    result = tracked_training(
        frame, origin,
        DataConfig(lookback=LOOKBACK, horizon=HORIZON, val_fraction=0.05, test_fraction=0.05),
        ModelConfig(arch="lstm", mode="n-to-1", hidden_size=64, num_layers=2,
                    quantiles=(0.1, 0.5, 0.9)),
        TrainConfig(epochs=epochs, device="cpu", seed=42, max_batches_per_epoch=max_batches),
        register_as=MODEL_NAME, alias="champion", run_name="bench_service")
    assert result.version is not None
    return result.version


# --------------------------------------------------------------------------- payloads

@dataclass(frozen=True)
class Window:
    id: str
    dates: list[str]
    ohlc: list[list[float]]  # [60][4]


def sample_windows(count: int, seed: int = 0) -> list[Window]:
    """`count` distinct real 60-bar windows of the bundled sample, from all its tickers."""
    from forecaster.data.sources import load_source

    frame, _ = load_source("sample")
    rng = random.Random(seed)
    per_ticker = {t: g.sort_values("date").reset_index(drop=True) for t, g in frame.groupby("ticker")}
    choices = [(t, end) for t, g in per_ticker.items() for end in range(LOOKBACK, len(g) + 1)]
    picked = rng.sample(choices, count)
    windows = []
    for ticker, end in picked:
        g = per_ticker[ticker].iloc[end - LOOKBACK:end]
        windows.append(Window(
            id=f"{ticker}_{end:04d}",
            dates=[d.strftime("%Y-%m-%d") for d in g["date"]],
            ohlc=g[["open", "high", "low", "close"]].astype(float).values.tolist()))
    return windows


def ours_single(w: Window) -> dict[str, Any]:
    return {"history": [{"date": d, "open": o, "high": h, "low": lo, "close": c}
                        for d, (o, h, lo, c) in zip(w.dates, w.ohlc, strict=True)]}


def ours_batch(ws: list[Window]) -> dict[str, Any]:
    return {"series": [{"id": w.id, "history": ours_single(w)["history"]} for w in ws]}


def ours_columns(w: Window) -> dict[str, list[Any]]:
    """The same bars in the columnar form of `history`."""
    return {"date": w.dates, **{name: [bar[i] for bar in w.ohlc] for i, name in enumerate(OHLC)}}


def ours_batch_columnar(ws: list[Window]) -> dict[str, Any]:
    return {"series": [{"id": w.id, "history": ours_columns(w)} for w in ws]}


def mlflow_body(ws: list[Window]) -> dict[str, Any]:
    rows = [[w.id, d, *bar] for w in ws for d, bar in zip(w.dates, w.ohlc, strict=True)]
    return {"dataframe_split": {"columns": COLUMNS, "data": rows}}


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


# --------------------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class Servers:
    """Subprocesses started here, each in its own session; stopped by process group on exit."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        handle = log.open("wb")
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)
        handle.close()
        self.procs[name], self.logs[name] = proc, log
        return proc

    def wait_http(self, name: str, url: str, timeout_s: float) -> float:
        started = time.perf_counter()
        proc = self.procs[name]
        while time.perf_counter() - started < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - started
            time.sleep(0.25)
        raise RuntimeError(f"{name}: {url} not ready after {timeout_s:.0f} s:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)  # its own session: pgid == pid
        deadline = time.time() + 15
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.time()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def post_json(url: str, body: str) -> Any:
    req = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def batch_windows_stats(metrics_url: str) -> tuple[float, float]:
    """(sum, count) of the service's forecaster_batch_windows histogram."""
    total = count = 0.0
    for line in get_text(metrics_url).splitlines():
        if line.startswith("forecaster_batch_windows_sum"):
            total += float(line.split()[-1])
        elif line.startswith("forecaster_batch_windows_count"):
            count += float(line.split()[-1])
    return total, count


# --------------------------------------------------------------------------- correctness

def check_same_forecast(ours_url: str, mlflow_url: str, windows: list[Window]) -> str:
    """Both servers give the same medians for one series and for a 64-series batch (rtol 1e-4)."""
    lines = []
    for label, ws in (("1 series", windows[:1]), (f"{len(windows)} series", windows)):
        if len(ws) == 1:
            got = post_json(ours_url, dumps(ours_single(ws[0])))
            ours = {ws[0].id: [p["close"] for p in got["forecasts"][0]["points"]]}
        else:
            got = post_json(ours_url, dumps(ours_batch(ws)))
            ours = {f["id"]: [p["close"] for p in f["points"]] for f in got["forecasts"]}
        preds = post_json(mlflow_url, dumps(mlflow_body(ws)))["predictions"]
        theirs: dict[str, list[tuple[int, float]]] = {}
        for row in preds:
            theirs.setdefault(row["ticker"], []).append((int(row["step"]), float(row["close"])))
        a = np.array([ours[w.id] for w in ws])
        b = np.array([[c for _, c in sorted(theirs[w.id])] for w in ws])
        if a.shape != (len(ws), HORIZON) or a.shape != b.shape:
            raise AssertionError(f"forecast shapes differ: ours {a.shape}, mlflow {b.shape}")
        if not np.allclose(a, b, rtol=1e-4, atol=0):
            raise AssertionError(f"{label}: medians differ: max rel diff {np.max(np.abs(a - b) / np.abs(b)):.2e}")
        worst = np.max(np.abs(a - b) / np.abs(b))
        lines.append(f"{label}: max relative difference of the {a.size} medians {worst:.1e}")
    return "; ".join(lines)


# --------------------------------------------------------------------------- load

@dataclass(frozen=True)
class Phase:
    key: str
    series: int
    concurrency: int


def run_loadgen(label: str, port: int, path: str, bodies: Path, phase: Phase, pids: list[int],
                expect: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(LOADGEN), "--port", str(port), "--path", path, "--bodies", str(bodies),
           "--concurrency", str(phase.concurrency), "--requests", str(args.requests),
           "--time-limit", str(args.time_limit), "--warmup", str(max(args.warmup, 4 * phase.concurrency)),
           "--warmup-time-limit", "5", "--pause", "0.5", "--expect", expect,
           "--series-per-request", str(phase.series), "--label", label]
    for pid in pids:
        cmd += ["--server-pid", str(pid)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.time_limit + 120)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen {label} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_wrk(port: int, bodies: Path, phase: Phase, seconds: float) -> dict[str, Any]:
    """A cross-check of loadgen.py with wrk (C, closed loop, keep-alive) on the same bodies."""
    threads = 1 if phase.concurrency == 1 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{phase.concurrency}", f"-d{max(1, round(seconds))}s", "--latency",
           "-s", str(HERE / "wrk_post.lua"), f"http://127.0.0.1:{port}/forecast"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                          env={**os.environ, "WRK_BODIES": str(bodies)})
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["series_per_s"] = result["req_per_s"] * phase.series
    return result


# --------------------------------------------------------------------------- report

def versions() -> str:
    out = [f"python {platform.python_version()}"]
    for name in ("torch", "mlflow", "fastapi", "uvicorn", "pydantic", "numpy", "pandas", "uvloop", "httptools"):
        try:
            out.append(f"{name} {__import__(name).__version__}")
        except (ImportError, AttributeError):
            out.append(f"{name} ?")
    return ", ".join(out)


def machine() -> str:
    cpu, ram = "unknown", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    return f"nproc {os.cpu_count()}, {cpu}, RAM {ram}, {platform.system()} {platform.release()}"


def fmt(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}" if x == x else "n/a"


def table(results: list[dict[str, Any]]) -> str:
    head = ["phase", "server", "series/req", "conc", "ok", "errors", "s", "req/s", "series/s", "p50 ms", "p99 ms",
            "server cores", "server CPU ms/req", "loadgen cores", "other cores", "load1 before→after"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        errors = sum(r["errors"].values())
        other = r["other_cpu_s"] / r["elapsed_s"] if r["elapsed_s"] else float("nan")
        rows.append("| " + " | ".join([
            r["phase"], r["server"], str(r["series_per_request"]), str(r["concurrency"]), str(r["ok"]), str(errors),
            fmt(r["elapsed_s"]) + ("*" if r["hit_time_limit"] else ""), fmt(r["req_per_s"]), fmt(r["series_per_s"], 0),
            fmt(r["p50_ms"], 2), fmt(r["p99_ms"], 2), fmt(r["server_cores"], 2),
            fmt(r["server_cpu_s"] * 1e3 / r["ok"] if r["ok"] else float("nan"), 2), fmt(r["client_cores"], 2),
            fmt(other, 2), f"{r['load1_before']:.2f}→{r['load1_after']:.2f}"]) + " |")
    return "\n".join(rows)


def cpu_eff(r: dict[str, Any]) -> float:
    """Requests served per CPU-second of the server process tree."""
    return r["ok"] / r["server_cpu_s"] if r["server_cpu_s"] > 0 else float("nan")


def pick(results: list[dict[str, Any]], phase: str, server: str) -> dict[str, Any]:
    return next(r for r in results if r["phase"] == phase and r["server"] == server)


def is_ours(server: str) -> bool:
    """Our service: one worker ("ours") or two ("ours-w2": a socket each, "ours-w2s": one shared)."""
    return server.startswith("ours")


def verdicts(results: list[dict[str, Any]], batch_avg: dict[str, float]) -> list[str]:
    lines = []
    servers = list(dict.fromkeys(r["server"] for r in results))
    others = [name for name in servers if not is_ours(name)]
    for key in ("a", "b", "c"):
        o = pick(results, key, "ours")
        for name in others:
            m = pick(results, key, name)
            lines.append(f"phase {key}: throughput ours/{name} = **{o['req_per_s'] / m['req_per_s']:.1f}x** "
                         f"({fmt(o['series_per_s'], 0)} vs {fmt(m['series_per_s'], 0)} series/s), "
                         f"per server CPU-second {cpu_eff(o) / cpu_eff(m):.1f}x; "
                         f"p50 {fmt(o['p50_ms'], 2)} vs {fmt(m['p50_ms'], 2)} ms")
    for name, how in (("ours-w2", "a socket each"), ("ours-w2s", "one shared socket")):
        if name not in servers:
            continue
        for key in ("a", "b", "c", "d"):
            o, w = pick(results, key, "ours"), pick(results, key, name)
            lines.append(f"phase {key}: 2 workers ({how}) / 1 worker = **{w['req_per_s'] / o['req_per_s']:.2f}x** "
                         f"({fmt(w['series_per_s'], 0)} vs {fmt(o['series_per_s'], 0)} series/s; server cores "
                         f"{w['server_cores']:.2f} vs {o['server_cores']:.2f}; p99 {fmt(w['p99_ms'], 2)} vs "
                         f"{fmt(o['p99_ms'], 2)} ms)")
    ob = pick(results, "b", "ours")
    b_ratio = ob["req_per_s"] / pick(results, "b", "mlflow")["req_per_s"]
    a_p99 = pick(results, "a", "ours")["p99_ms"]
    oc, od = pick(results, "c", "ours"), pick(results, "d", "ours")
    met = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    cpu_ms = lambda r: r["server_cpu_s"] * 1e3 / max(1, r["ok"])  # noqa: E731
    lines.append(f"goal 64-series requests >= {GOAL_BATCH_SERIES_S:,.0f} series/s: "
                 f"list **{met(oc['series_per_s'] >= GOAL_BATCH_SERIES_S)}** ({fmt(oc['series_per_s'], 0)}), "
                 f"columnar **{met(od['series_per_s'] >= GOAL_BATCH_SERIES_S)}** ({fmt(od['series_per_s'], 0)}); "
                 f"columnar/list {od['series_per_s'] / oc['series_per_s']:.2f}x, server CPU per request "
                 f"{cpu_ms(od):.1f} vs {cpu_ms(oc):.1f} ms")
    c32_met = ob["req_per_s"] >= GOAL_C32_REQ_S and b_ratio >= GOAL_C32_RATIO
    lines.append(f"goal single series at concurrency 32 >= {GOAL_C32_REQ_S:.0f} req/s and "
                 f">= {GOAL_C32_RATIO:.0f}x MLflow: **{met(c32_met)}** "
                 f"({ob['req_per_s']:.0f} req/s, {b_ratio:.1f}x)")
    lines.append(f"goal our p99 at concurrency 1 <= {GOAL_P99_MS:.0f} ms: **{met(a_p99 <= GOAL_P99_MS)}** "
                 f"({a_p99:.2f} ms)")
    for key, avg in batch_avg.items():
        lines.append(f"our micro-batcher in phase {key}: {avg:.1f} windows per forward pass on average")
    saturated = [f"{r['phase']}/{r['server']} ({r['client_cores']:.2f})" for r in results if r["client_cores"] >= 0.8]
    if saturated:
        lines.append("the load generator was close to saturating a core in: " + ", ".join(saturated)
                     + " (same generator for both servers, so ratios stay fair, but absolute rates there are a floor)")
    else:
        top = max(results, key=lambda r: r["client_cores"])
        lines.append(f"the load generator never saturated a core (max {top['client_cores']:.2f} cores, "
                     f"{top['phase']}/{top['server']})")
    return lines


def interpretation(results: list[dict[str, Any]], batch_avg: dict[str, float],
                   fwd: dict[tuple[int, int], float]) -> list[str]:
    """A few lines read off the numbers of this run."""
    oa, ma = pick(results, "a", "ours"), pick(results, "a", "mlflow")
    ob, mb = pick(results, "b", "ours"), pick(results, "b", "mlflow")
    oc, mc = pick(results, "c", "ours"), pick(results, "c", "mlflow")
    ms_req = lambda r: r["server_cpu_s"] * 1e3 / max(1, r["ok"])  # noqa: E731
    other = max(r["other_cpu_s"] / r["elapsed_s"] for r in results)
    out = [
        f"- One request at a time (a): p50 {fmt(oa['p50_ms'], 2)} vs {fmt(ma['p50_ms'], 2)} ms. A one-window forward "
        f"costs {fwd[(1, 1)]:.2f} ms in process (1 torch thread), so most of each request is HTTP, JSON and "
        f"validation (a lone request does not wait for the micro-batcher's window).",
        f"- Concurrency 32 (b): ours coalesced {batch_avg.get('b', float('nan')):.1f} windows per forward pass and "
        f"served {ob['req_per_s']:.0f} vs {mb['req_per_s']:.0f} req/s ({ob['req_per_s'] / mb['req_per_s']:.1f}x); "
        f"server CPU per request {ms_req(ob):.2f} vs {ms_req(mb):.2f} ms ({cpu_eff(ob) / cpu_eff(mb):.1f}x fewer "
        f"CPU-ms per request), p99 {fmt(ob['p99_ms'], 0)} vs {fmt(mb['p99_ms'], 0)} ms (closed loop: mostly queueing).",
        f"- 64-series requests (c): {oc['series_per_s']:.0f} vs {mc['series_per_s']:.0f} series/s "
        f"({oc['series_per_s'] / mc['series_per_s']:.1f}x), {ms_req(oc):.1f} vs {ms_req(mc):.1f} CPU-ms per request; "
        f"MLflow runs one forward per request, ours coalesced {batch_avg.get('c', float('nan')):.0f} windows per pass; "
        "see the in-process stages above for where a request's CPU goes.",
        f"- Caveat: the 2 cores were shared with other jobs (up to {other:.2f} cores of 'other' CPU in a cell, see "
        f"load averages), and a single-threaded event loop gets a smaller CPU share than MLflow's thread pool on an "
        f"oversubscribed machine; one run per cell. Compare ratios within this run, not absolute numbers across runs.",
    ]
    if any(r["server"] == "mlflow-1t" for r in results):
        tb = pick(results, "b", "mlflow-1t")
        out.append(f"- Control: MLflow with OMP_NUM_THREADS=1 served {tb['req_per_s']:.0f} req/s at concurrency 32 "
                   f"({ms_req(tb):.2f} CPU-ms per request), "
                   f"i.e. ours is {ob['req_per_s'] / tb['req_per_s']:.1f}x that.")
    return out


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Our service vs mlflow models serve, back to back.")
    p.add_argument("--requests", type=int, default=3000, help="most measured requests per phase and server")
    p.add_argument("--time-limit", type=float, default=20.0, help="most seconds per phase and server")
    p.add_argument("--warmup", type=int, default=100, help="warm-up requests per phase (at least 4 x concurrency)")
    p.add_argument("--batch-concurrency", type=int, default=4, help="concurrency of phase c (64-series requests)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-batches", type=int, default=10, help="training steps per epoch (0 = all windows)")
    p.add_argument("--pool", type=int, default=256, help="distinct history windows")
    p.add_argument("--phases", default="abcd", help="subset of phases to run, e.g. 'b' (d: 64-series columnar)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results fragment (markdown)")
    p.add_argument("--no-write", action="store_true", help="print only; do not write --out")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary store and server logs")
    p.add_argument("--wrk", action="store_true", help="also drive our server with wrk (cross-check of loadgen.py)")
    p.add_argument("--workers2", action="store_true",
                   help="also measure `forecaster serve --workers 2` (two worker processes, metrics summed)")
    p.add_argument("--mlflow-1t", action="store_true",
                   help="also measure a second MLflow server with OMP_NUM_THREADS=1 (one torch thread, like ours)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.wrk and shutil.which("wrk") is None:
        sys.exit("--wrk needs the wrk binary on PATH (Debian: apt-get install wrk)")
    command = "python benchmarks/bench_service.py" + ("" if argv is None and len(sys.argv) == 1 else
                                                     " " + " ".join(argv if argv is not None else sys.argv[1:]))
    started = dt.datetime.now()
    load_start = load3()
    say(f"# serving benchmark {started:%Y-%m-%d %H:%M}; load average {load_start}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_service_"))
    servers = Servers()

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    try:
        import torch

        default_threads = torch.get_num_threads()  # before training sets 1 in this process
        tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
        t0 = time.perf_counter()
        version = train_and_register(tracking_uri, args.epochs, args.max_batches or None)
        say(f"trained and registered {MODEL_NAME} v{version} @champion in {time.perf_counter() - t0:.1f} s "
            f"(load {load3()})")

        windows = sample_windows(args.pool)
        fwd = forward_ms(tracking_uri, windows, default_threads)
        fwd_text = "in-process Forecaster.predict, median of 20 (1 / 32 / 64 windows): " + "; ".join(
            f"torch threads {t}: {fwd[(t, 1)]:.2f} / {fwd[(t, 32)]:.2f} / {fwd[(t, 64)]:.2f} ms"
            for t in sorted({t for t, _ in fwd}))
        say(fwd_text + f" (load {load3()})")
        bodies = {
            ("ours", 1): [dumps(ours_single(w)) for w in windows],
            ("mlflow", 1): [dumps(mlflow_body([w])) for w in windows],
            ("ours", BATCH_SERIES): [], ("mlflow", BATCH_SERIES): [], ("columnar", BATCH_SERIES): [],
        }
        for k in range(0, len(windows), BATCH_SERIES // 2):  # overlapping 64-window groups
            group = (windows + windows)[k:k + BATCH_SERIES]
            bodies[("ours", BATCH_SERIES)].append(dumps(ours_batch(group)))
            bodies[("mlflow", BATCH_SERIES)].append(dumps(mlflow_body(group)))
            bodies[("columnar", BATCH_SERIES)].append(dumps(ours_batch_columnar(group)))
        files = {}
        for (server, n), items in bodies.items():
            files[(server, n)] = tmp / f"bodies_{server}_{n}.ndjson"
            files[(server, n)].write_text("\n".join(items) + "\n")
        sizes = {k: sum(map(len, v)) / len(v) / 1024 for k, v in bodies.items()}

        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "FORECASTER_MODEL_NAME": MODEL_NAME,
               "FORECASTER_DEVICE": "cpu", "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               "PYTHONWARNINGS": "ignore"}
        keep = ("FORECASTER_MODEL_NAME", "FORECASTER_DEVICE")
        for key in [k for k in env if k.startswith("FORECASTER_") and k not in keep]:
            env.pop(key)  # production defaults for everything else
        names = (["ours", "mlflow"] + (["ours-w2", "ours-w2s"] if args.workers2 else [])
                 + (["mlflow-1t"] if args.mlflow_1t else []))
        ports = {name: free_port() for name in names}
        ready = {name: "/ready" if is_ours(name) else "/ping" for name in names}
        for name in names:
            if name == "ours":
                cmd = [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1", "--port",
                       str(ports[name]), "--workers", "1", "--loop", "uvloop", "--http", "httptools",
                       "--no-access-log", "--log-level", "warning"]
            elif name in ("ours-w2", "ours-w2s"):  # the production command for replicated serving on one host
                cmd = [str(VENV_BIN / "forecaster"), "serve", "--host", "127.0.0.1", "--port", str(ports[name]),
                       "--workers", "2", "--log-level", "warning"]
                cmd += ["--shared-socket"] if name == "ours-w2s" else []
            else:
                cmd = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL_NAME}@champion",
                       "--env-manager", "local", "-p", str(ports[name]), "-h", "127.0.0.1"]
            extra = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"} if name == "mlflow-1t" else {}
            servers.start(name, cmd, {**env, **extra}, tmp / f"{name}.log")
        up = {name: servers.wait_http(name, f"http://127.0.0.1:{ports[name]}{ready[name]}", 180) for name in names}
        pids = {name: descendants(servers.procs[name].pid) for name in names}
        say("servers up (started together): " + ", ".join(
            f"{name} {ready[name]} after {up[name]:.1f} s (pids {pids[name]})" for name in names) + f"; load {load3()}")

        ours_port, mlflow_port = ports["ours"], ports["mlflow"]
        ours_url = f"http://127.0.0.1:{ours_port}/forecast"
        mlflow_url = f"http://127.0.0.1:{mlflow_port}/invocations"
        check = check_same_forecast(ours_url, mlflow_url, windows[:BATCH_SERIES])
        as_list = post_json(ours_url, dumps(ours_batch(windows[:BATCH_SERIES])))["forecasts"]
        as_columns = post_json(ours_url, dumps(ours_batch_columnar(windows[:BATCH_SERIES])))["forecasts"]
        if as_list != as_columns:
            raise AssertionError("list and columnar bodies gave different forecasts")
        check += "; list and columnar 64-series bodies: identical answers"
        if args.workers2:
            for name in ("ours-w2", "ours-w2s"):
                w2_url = f"http://127.0.0.1:{ports[name]}/forecast"
                if post_json(w2_url, dumps(ours_batch(windows[:BATCH_SERIES])))["forecasts"] != as_list:
                    raise AssertionError(f"2 workers ({name}) and 1 worker gave different forecasts")
            check += "; 1 and 2 workers: identical answers"
        say(f"correctness: same medians from both servers ({check})")
        stages = stage_ms(tracking_uri, windows[:BATCH_SERIES])
        say("in-process stages of one 64-series request (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))

        phases = [p for p in (Phase("a", 1, 1), Phase("b", 1, 32), Phase("c", BATCH_SERIES, args.batch_concurrency),
                              Phase("d", BATCH_SERIES, args.batch_concurrency))
                  if p.key in args.phases]
        results: list[dict[str, Any]] = []
        batch_avg: dict[str, float] = {}
        metrics_url = f"http://127.0.0.1:{ours_port}/metrics"
        for i, phase in enumerate(phases):
            order = names if i % 2 == 0 else names[::-1]
            if phase.key == "d":  # the columnar form is ours only: phase c's list bodies, as columns
                order = [name for name in order if is_ours(name)]
            for server in order:
                path, expect = ("/forecast", '{"model"') if is_ours(server) else ("/invocations", '{"predictions"')
                kind = "columnar" if phase.key == "d" else "ours" if is_ours(server) else "mlflow"
                before = batch_windows_stats(metrics_url) if server == "ours" else None
                r = run_loadgen(f"{phase.key}/{server}", ports[server], path, files[(kind, phase.series)], phase,
                                pids[server], expect, args)
                if before is not None:
                    after = batch_windows_stats(metrics_url)  # includes the warm-up requests
                    batch_avg[phase.key] = (after[0] - before[0]) / max(1.0, after[1] - before[1])
                r.update(phase=phase.key, server=server)
                results.append(r)
                errs = sum(r["errors"].values())
                say(f"  {phase.key}/{server:9s} c={phase.concurrency:<2d} {r['ok']:5d} ok {errs} err "
                    f"{r['req_per_s']:8.1f} req/s p50 {r['p50_ms']:7.2f} p99 {r['p99_ms']:7.2f} ms "
                    f"server {r['server_cores']:.2f} cores ({r['server_cpu_s'] * 1e3 / max(1, r['ok']):.2f} ms "
                    f"CPU/req), loadgen {r['client_cores']:.2f} cores, "
                    f"load {r['load1_before']:.2f}->{r['load1_after']:.2f}"
                    + (f"  first error: {r['first_error']}" if errs or r["warmup_errors"] else ""))
                for name in pids:
                    if servers.procs[name].poll() is not None:
                        raise RuntimeError(f"{name} died:\n{servers.tail(name)}")
        wrk_lines = []
        if args.wrk:
            for phase in phases:
                kind = "columnar" if phase.key == "d" else "ours"
                w = run_wrk(ours_port, files[(kind, phase.series)], phase, args.time_limit)
                wrk_lines.append(f"wrk, ours, phase {phase.key} (c={phase.concurrency}): {w['req_per_s']:.1f} req/s, "
                                 f"{w['series_per_s']:.0f} series/s, p50 {w['p50_ms']:.2f} ms, "
                                 f"p99 {w['p99_ms']:.2f} ms, non-200 {w['non200']}; load {load3()}")
                say("  " + wrk_lines[-1])
        load_end = load3()

        info = (f"date {started:%Y-%m-%d %H:%M}; machine: {machine()}; versions: {versions()}")
        say("")
        say(table(results))
        say("")
        for line in verdicts(results, batch_avg) if len(phases) == 4 else []:
            say(f"- {line}")
        if len(phases) == 4:
            report = "\n".join([
                "## Serving: our service vs `mlflow models serve` (same model, same load, one run)",
                "",
                f"Command: `{command}` (from the repo root with the project venv; total "
                f"{(dt.datetime.now() - started).total_seconds():.0f} s).",
                f"Date: {started:%Y-%m-%d %H:%M}. Machine: {machine()}.",
                f"Versions: {versions()}.",
                f"Load average (1/5/15 min): {load_start} at start, {load_end} at end; per-cell 1-min load in the "
                "table.",
                "",
                f"Model: LSTM n-to-1, hidden 64, 2 layers, lookback 60, horizon 5, quantiles 0.1/0.5/0.9, trained "
                f"{args.epochs} epoch(s) of at most {args.max_batches or 'all'} batches on the bundled sample, "
                f"registered as `{MODEL_NAME}@champion` (v{version}) in a temporary SQLite store.",
                "Servers (started together; each idle while another is measured): ours `uvicorn service.app:app "
                "--workers 1 "
                "--loop uvloop --http httptools --no-access-log` (as `forecaster serve`), FORECASTER_DEVICE=cpu, "
                "other settings "
                "default (batch wait 2 ms); MLflow `mlflow models serve -m models:/bench@champion --env-manager local` "
                f"(defaults: 1 uvicorn worker, access log on, torch's default intra-op threads, {default_threads} "
                "here). Our service runs its "
                "forward passes with 1 torch thread (FORECASTER_TORCH_THREADS default)"
                + (", and `mlflow-1t` is the same MLflow server with OMP_NUM_THREADS=1 as a control."
                   if args.mlflow_1t else ".")
                + (" `ours-w2` is `forecaster serve --workers 2`: two worker processes sharing the port "
                   "(uvicorn's supervisor; one SO_REUSEPORT socket per worker, the default), the same settings, "
                   "Prometheus multiprocess metrics; `ours-w2s` the same with `--shared-socket` (both workers "
                   "accept from one socket)." if args.workers2 else ""),
                "Load: `benchmarks/loadgen.py`, a separate process (raw HTTP/1.1 keep-alive on asyncio/uvloop), "
                "closed loop, "
                f"pre-serialised bodies from {args.pool} distinct real 60-bar windows of the sample (ours "
                f"{sizes[('ours', 1)]:.1f} KB / "
                f"{sizes[('ours', BATCH_SERIES)]:.0f} KB, MLflow {sizes[('mlflow', 1)]:.1f} KB / "
                f"{sizes[('mlflow', BATCH_SERIES)]:.0f} KB "
                f"per 1 / 64-series body). Per cell: warm-up (max({args.warmup}, 4 x concurrency) requests, not "
                "reported), "
                f"then at most {args.requests} requests or {args.time_limit:.0f} s (`*` = time limit hit). Every "
                "response "
                "checked for 200 and the expected JSON start. Server order alternates by phase (a: ours first, b: "
                "ours last, c: ours first).",
                f"Correctness (once, before the load): {check} (rtol 1e-4).",
                f"Floor: {fwd_text}, measured before the servers started.",
                "In-process stages of one 64-series request (median ms, 1 torch thread, measured after the check): "
                + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()) + ".",
                "Phase d: phase c's bodies in the columnar `history` form (ours only; MLflow's body is a "
                "dataframe_split either way).",
                "CPU columns are CPU-seconds per wall-second over the measured window: server process tree, load "
                "generator, "
                "and everything else on the machine (other agents included).",
                "",
                table(results),
                "",
                *[f"- {line}" for line in verdicts(results, batch_avg)],
                *[f"- {line}" for line in wrk_lines],
                "",
                "Interpretation:",
                "",
                *interpretation(results, batch_avg, fwd),
                "",
            ])
            if not args.no_write:
                args.out.write_text(report)
                say(f"\nwrote {args.out}")
        say(f"load average at end {load_end}; {info}")
        return 0
    finally:
        servers.stop_all()
        if args.keep_tmp:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
