"""The forecast ledger's cost: serving with the ledger on vs off, side by side in one run, and the
ledger's write and scoring throughput on a ledger of a million forecast steps.

1. trains and registers the production-sized model as bench_service.py does;
2. starts two services as in production (`uvicorn service.app:app`, one worker each), one with
   FORECASTER_LEDGER=on (a SQLite ledger in the temporary folder), one with FORECASTER_LEDGER=off,
   and drives them with bench_service.py's closed-loop load generator over the same real windows:
   (a) 1 series at concurrency 1, (b) 1 series at concurrency 32, (c) 64 series at concurrency 4;
   the servers alternate who goes first; then checks that the ledger holds every forecast
   answered (its written counter equals its rows, nothing dropped); with `--baseline-tree DIR` (an
   older checkout, e.g. `git archive 910a473 | tar -x -C DIR`) a third service runs that tree's
   code with its ledger on (`uvicorn --app-dir DIR`), measured in the same run;
3. builds a ledger of `--rows` forecast steps (synthetic random-walk bars, `--tickers` tickers,
   horizon 5) and times the appends and `forecaster.monitor.score.score` over it, then scores
   again (nothing is due: the cost of an idempotent re-run).

    .venv/bin/python benchmarks/bench_ledger.py                  # about 4 minutes on 2 cores
    .venv/bin/python benchmarks/bench_ledger.py --skip-serving   # scoring only
    .venv/bin/python benchmarks/bench_ledger.py --baseline-tree /tmp/ledger_old  # beside an older ledger
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_service as bs  # noqa: E402  (benchmarks/ is not a package)

LEVELS = [0.1, 0.5, 0.9]


def serving(args: argparse.Namespace, tmp: Path) -> list[str]:
    tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    bs.train_and_register(tracking_uri, 1, 10)
    windows = bs.sample_windows(256)
    single = tmp / "single.ndjson"
    single.write_text("\n".join(bs.dumps(bs.ours_single(w)) for w in windows) + "\n")
    batch = tmp / "batch.ndjson"
    groups = [(windows + windows)[k : k + bs.BATCH_SERIES] for k in range(0, len(windows), bs.BATCH_SERIES // 2)]
    batch.write_text("\n".join(bs.dumps(bs.ours_batch(g)) for g in groups) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    env |= {"MLFLOW_TRACKING_URI": tracking_uri, "FORECASTER_MODEL_NAME": bs.MODEL_NAME, "FORECASTER_DEVICE": "cpu"}
    ledger_uri = f"sqlite:///{tmp / 'ledger.db'}"
    settings = {"on": {"FORECASTER_LEDGER_URI": ledger_uri}, "off": {"FORECASTER_LEDGER": "off"}}
    if args.baseline_tree:
        settings["on@base"] = {"FORECASTER_LEDGER_URI": f"sqlite:///{tmp / 'ledger_base.db'}"}
    servers = bs.Servers()
    ports = {name: bs.free_port() for name in settings}
    try:
        for name, extra in settings.items():
            cmd = [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1", "--port",
                   str(ports[name]), "--workers", "1", "--loop", "uvloop", "--http", "httptools",
                   "--no-access-log", "--log-level", "warning"]  # fmt: skip
            if name == "on@base":
                cmd += ["--app-dir", str(Path(args.baseline_tree).resolve())]  # first on sys.path: its code
            servers.start(name, cmd, {**env, **extra}, tmp / f"{name}.log")
        for name in settings:
            servers.wait_http(name, f"http://127.0.0.1:{ports[name]}/ready", 180)
        pids = {name: bs.descendants(servers.procs[name].pid) for name in settings}
        lines = []
        phases = [bs.Phase("a", 1, 1), bs.Phase("b", 1, 32), bs.Phase("c", bs.BATCH_SERIES, 4)]
        for i, phase in enumerate(phases):
            names = list(settings)
            for name in names if i % 2 == 0 else names[::-1]:
                bodies = single if phase.series == 1 else batch
                r = bs.run_loadgen(f"{phase.key}/{name}", ports[name], "/forecast", bodies, phase, pids[name],
                                   '{"model"', args)  # fmt: skip
                errors = sum(r["errors"].values())
                lines.append(
                    f"| {phase.key} | {phase.series} | {phase.concurrency} | ledger {name} | {r['ok']} | {errors} | "
                    f"{r['req_per_s']:.1f} | {r['req_per_s'] * phase.series:.0f} | {r['p50_ms']:.2f} | "
                    f"{r['p99_ms']:.2f} | {r['server_cpu_s'] * 1e3 / max(1, r['ok']):.2f} |"
                )
                bs.say(lines[-1])
        metrics = bs.get_text(f"http://127.0.0.1:{ports['on']}/metrics")
    finally:
        servers.stop_all()
    written = sum(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith("forecaster_ledger_written_total"))
    dropped = sum(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith("forecaster_ledger_dropped_total"))
    from forecaster.monitor.store import LedgerStore

    store = LedgerStore(ledger_uri)
    with store.connect("counting") as connection:
        rows = connection.exec_driver_sql("SELECT count(*) FROM ledger_forecasts").scalar_one()
    store.close()
    lines.append(f"ledger on: {written:.0f} series forecasts written ({rows} rows, one per series forecast of "
                 f"{bs.HORIZON} steps), {dropped:.0f} dropped")  # fmt: skip
    bs.say(lines[-1])
    return lines


def random_bars(tickers: int, days: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=days)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (tickers, days)), axis=1))
    open_ = close * np.exp(rng.normal(0.0, 0.003, close.shape))
    return pd.DataFrame(
        {
            "date": np.tile(dates, tickers),
            "ticker": np.repeat([f"T{i:04d}" for i in range(tickers)], days),
            "open": open_.ravel(),
            "high": np.maximum(open_, close).ravel() * 1.002,
            "low": np.minimum(open_, close).ravel() * 0.998,
            "close": close.ravel(),
        }
    )


def scoring(args: argparse.Namespace, tmp: Path) -> list[str]:
    from forecaster.monitor.schema import ForecastRecord
    from forecaster.monitor.score import score
    from forecaster.monitor.store import LedgerStore

    horizon = 5
    origins = -(-args.rows // (args.tickers * horizon))
    frame = random_bars(args.tickers, origins + horizon + 30)
    store = LedgerStore(f"sqlite:///{tmp / 'scoring.db'}")
    served = dt.datetime.now(dt.UTC)
    t0, appended, pending = time.perf_counter(), 0, []  # appended: series forecasts (rows)
    for ticker, bars in frame.groupby("ticker"):
        dates, close = [d.date() for d in bars["date"]], bars["close"].to_numpy()
        for t in range(30, 30 + origins):
            last = float(np.float32(close[t]))
            pending.append(ForecastRecord(
                served, "service", "served", "bench", "1", "champion", None, f"r{t}", str(ticker), str(ticker),
                "file", "0" * 32, dates[t], last, LEVELS, dates[t + 1 : t + 1 + horizon],
                [[last * 0.98, last, last * 1.02]] * horizon,
            ).row())  # fmt: skip
            if len(pending) >= 10_000:
                appended += store.append(pending)
                pending = []
    appended += store.append(pending)
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    first = score(store, frame, "synthetic")
    score_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = score(store, frame, "synthetic")
    again_s = time.perf_counter() - t0
    store.close()
    lines = [
        f"ledger of {appended * horizon:,} forecast steps ({args.tickers} tickers x {origins} as-of dates x {horizon} "
        f"steps = {appended:,} rows, SQLite): built (records -> rows -> appends of 10k) in {write_s:.1f} s = "
        f"{appended * horizon / write_s:,.0f} steps/s",
        f"score: {first.scored:,} steps scored in {score_s:.1f} s = {first.scored / score_s:,.0f} rows/s "
        f"({first.pending:,} pending: target after the last bar); again: {again.scored} scored in {again_s:.1f} s",
    ]
    for line in lines:
        bs.say(line)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="most measured requests per phase and server")
    parser.add_argument("--time-limit", type=float, default=12.0, help="most seconds per phase and server")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1_000_000, help="forecast steps in the scoring ledger")
    parser.add_argument("--tickers", type=int, default=200)
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--baseline-tree", help="an older checkout served beside, its ledger on")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_ledger_"))
    bs.say(f"# ledger benchmark {dt.datetime.now():%Y-%m-%d %H:%M}; load average {bs.load3()}; {bs.machine()}")
    try:
        if not args.skip_serving:
            bs.say("| phase | series | c | server | ok | errors | req/s | series/s | p50 ms | p99 ms | CPU ms/req |")
            bs.say("|---|---|---|---|---|---|---|---|---|---|---|")
            serving(args, tmp)
        scoring(args, tmp)
        bs.say(f"load average at the end {bs.load3()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
