"""From an empty store to a ready service, as processes on the embedded default (SQLite): the first
`forecaster retrain --once` always leaves a champion, even when its challenger is an untrained
network the gate rejects, and `forecaster serve` reaches /ready on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_support import Service, ar1_ohlc, base_env, history_payload, retrain_args, run_cli, wait_until
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
MODEL = "fresh"


def test_a_first_retrain_on_an_empty_store_leaves_a_champion_the_service_serves(tmp_path: Path) -> None:
    frame = ar1_ohlc(tickers=3, days=400)
    csv = tmp_path / "bars.csv"
    frame.to_csv(csv, index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = base_env(MLFLOW_TRACKING_URI=uri)
    settings = {
        "model_name": MODEL,
        "source": "file",
        "data_path": csv,
        "data_dir": tmp_path / "data",
        "lookback": 20,
        "horizon": 3,
        "device": "cpu",
        "lock_file": tmp_path / "retrain.lock",
        "tracking_uri": uri,
        # an untrained network: the gate's strict rules may or may not pass it, but a champion must follow
        "epochs": 1,
        "lr": 1e-6,
        "hidden": 2,
        "arch": "rnn",
    }
    result = run_cli(["retrain", "--once", *retrain_args(**settings)], env, tmp_path, timeout_s=300)
    assert result.returncode == 0, result.describe()
    report = result.json
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = str(client.get_registered_model(MODEL).aliases["champion"])
    assert report["champion_before"] is None and report["champion_after"] == champion
    if report["promoted"]:
        assert champion == report["version"] == "1" and report["baseline_version"] is None
    else:
        assert champion == report["baseline_version"] == "2"
        assert client.get_model_version(MODEL, "2").tags["gate_first_champion"] == "ewma_baseline"

    service = Service(
        base_env(MLFLOW_TRACKING_URI=uri, FORECASTER_MODEL_NAME=MODEL, FORECASTER_DEVICE="cpu"),
        tmp_path / "service.log",
    )
    try:
        service.start(tmp_path)
        assert wait_until(service.ready_version, 120, f"/ready (log {service.log_path})") == champion
        assert service.served_version(history_payload(frame, "AR1", 25)) == champion
    finally:
        service.stop()
