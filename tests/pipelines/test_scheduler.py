"""`forecaster retrain --schedule`: the cron trigger fires the pipeline as a real process,
which stops after --max-runs and leaves a registered version behind."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
from e2e_support import FORECASTER, ar1_ohlc, base_env, kill_process, retrain_args

FIRE_WITHIN_S = 60
EXIT_WITHIN_S = 240


@pytest.mark.slow
def test_six_field_schedule_fires_once_and_registers_a_version(tmp_path: Path) -> None:
    csv = tmp_path / "bars.csv"
    ar1_ohlc(tickers=2, days=300).to_csv(csv, index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        "retrain",
        "--schedule",
        "*/2 * * * * *",
        "--max-runs",
        "1",
        *retrain_args(
            model_name="scheduled",
            source="file",
            data_path=csv,
            data_dir=tmp_path / "data",
            lookback=20,
            horizon=3,
            hidden=8,
            layers=1,
            epochs=1,
            batch_size=64,
            device="cpu",
            timezone="UTC",
            lock_file=tmp_path / "retrain.lock",
            tracking_uri=uri,
        ),
    ]
    started = time.monotonic()
    proc = subprocess.Popen(
        [FORECASTER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=base_env(MLFLOW_TRACKING_URI=uri),
        cwd=tmp_path,
        start_new_session=True,
    )
    seen: list[tuple[float, str]] = []  # (seconds since start, line)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append((time.monotonic() - started, line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        kill_process(proc)
        pytest.fail(
            f"the scheduler did not exit after one run within {EXIT_WITHIN_S}s:\n"
            + "\n".join(line for _, line in seen[-40:])
        )
    reader.join(timeout=10)
    output = "\n".join(line for _, line in seen)
    assert proc.returncode == 0, output

    def first(fragment: str) -> float:
        hits = [at for at, line in seen if fragment in line]
        assert hits, f"'{fragment}' not logged:\n{output}"
        return hits[0]

    scheduled_at, fired_at = first("retraining scheduled"), first("step 1/5")
    assert "*/2 * * * * *" in output
    assert fired_at - scheduled_at < FIRE_WITHIN_S, f"fired {fired_at - scheduled_at:.0f}s after scheduling"
    assert output.count("step 1/5") == 1, "max-runs 1 means one run"
    assert "<locals>" not in output and "Running job" not in output, "no scheduler internals in the output"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = sorted(str(mv.version) for mv in client.search_model_versions("name='scheduled'"))
    challenger = client.get_model_version("scheduled", "1").tags
    champion = str(client.get_registered_model("scheduled").aliases["champion"])  # never without one
    # what the run said is what the registry holds: the challenger promoted, or the EWMA baseline serving
    if "scheduled: version 1 PROMOTED" in output:
        assert (versions, champion, challenger["gate_promoted"]) == (["1"], "1", "true")
    else:
        assert "scheduled: version 1 rejected" in output and challenger["gate_promoted"] == "false"
        assert (versions, champion) == (["1", "2"], "2")
        assert client.get_model_version("scheduled", "2").tags["gate_first_champion"] == "ewma_baseline"
    assert challenger["gate_reason"] in output
