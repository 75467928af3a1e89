"""The one contract every model configuration keeps, in one parametrised place: for every
arch x mode x option set, forecasts have shape (N, H, Q) with quantiles that never cross, the
bundle reloads to identical forecasts, and the library, the MLflow pyfunc and the HTTP service
answer the same numbers for the same history.

Weights and calibration are random (a zero head would hide a lost tensor or a skipped step);
every model is registered in this session's store and served by one app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from forecaster.config import ARCHES, MODES, DataConfig, ModelConfig
from forecaster.model.artifact import load_bundle, save_bundle
from forecaster.model.calibration import Calibration
from forecaster.model.networks import build_model
from forecaster.model.predictor import Forecaster
from forecaster.model.scaling import WindowTransform
from forecaster.registry import tracking
from forecaster.registry.pyfunc_model import ForecasterPyfunc

DATA = DataConfig(lookback=24, horizon=3)
OPTION_SETS: dict[str, dict[str, Any]] = {
    **{f"{arch}-{mode}": {"arch": arch, "mode": mode} for arch in ARCHES for mode in MODES},
    "lstm-bidirectional": {"arch": "lstm", "bidirectional": True},
    "gru-ensemble": {"arch": "gru", "ensemble": 2},
    "gru-seq2seq-5-levels": {"arch": "gru", "mode": "seq2seq", "quantiles": (0.05, 0.25, 0.5, 0.75, 0.95)},
    "rnn-two-layers": {"arch": "rnn", "num_layers": 2, "dropout": 0.2},
}
TICKERS = ("AAA", "BBB")


def random_bundle(path: Path, options: dict[str, Any], seed: int) -> ModelConfig:
    config = ModelConfig(hidden_size=8, head_size=8, **options)
    torch.manual_seed(seed)
    model = build_model(config, DATA.horizon).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    rng = np.random.default_rng(seed)
    q = len(config.network_levels)
    calibration = Calibration(rng.normal(0, 0.2, (DATA.horizon, q)), rng.uniform(0, 1, DATA.horizon))
    transform = WindowTransform.for_data(DATA)
    save_bundle(path, model, config, DATA, transform, calibration)
    return config


@pytest.fixture(scope="module")
def contract_models(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every option set as a bundle on disk and a registered model `contract-<name>@champion`."""
    tracking.configure(registry.uri)  # set up before the per-test autouse fixture that also does this
    root = tmp_path_factory.mktemp("contract")
    example = registry.frame[registry.frame["ticker"].isin(TICKERS)].groupby("ticker").tail(DATA.lookback)
    example = example.assign(date=example["date"].dt.strftime("%Y-%m-%d"))[
        ["ticker", "date", "open", "high", "low", "close"]
    ]
    bundles = {}
    for i, (name, options) in enumerate(OPTION_SETS.items()):
        bundles[name] = root / name
        random_bundle(bundles[name], options, seed=i)
        with tracking.start_run(run_name=f"contract-{name}"):
            _, version = tracking.log_model(bundles[name], example.reset_index(drop=True), f"contract-{name}")
        assert version is not None
        tracking.set_alias(f"contract-{name}", "champion", version)
    return bundles


@pytest.fixture(scope="module")
def contract_client(
    contract_models: dict[str, Path], serve_app: Callable[..., AbstractContextManager[httpx.Client]]
) -> Iterator[httpx.Client]:
    with serve_app() as client:
        yield client


BARS = DATA.lookback + 7


def histories(registry: Any) -> dict[str, pd.DataFrame]:
    return {t: registry.frame[registry.frame["ticker"] == t].tail(BARS) for t in TICKERS}


@pytest.mark.parametrize("name", list(OPTION_SETS))
def test_every_model_keeps_the_contract(
    name: str, contract_models: dict[str, Path], contract_client: httpx.Client, registry: Any
) -> None:
    forecaster = Forecaster(load_bundle(contract_models[name]), device="cpu")
    config = forecaster.bundle.model_config
    bars = histories(registry)
    windows = np.stack([forecaster.window(frame).values for frame in bars.values()])

    # shapes and quantiles that never cross, calibration included
    forecast = forecaster.predict_windows(windows)
    assert forecast.quantiles.shape == (len(TICKERS), DATA.horizon, len(config.quantiles))
    assert forecast.levels == config.quantiles
    assert np.isfinite(forecast.quantiles).all()
    assert (np.diff(forecast.quantiles, axis=-1) >= 0).all()

    # the bundle reloads to the same forecasts
    reloaded = Forecaster(load_bundle(contract_models[name]), device="cpu").predict_windows(windows)
    np.testing.assert_array_equal(reloaded.quantiles, forecast.quantiles)

    # the pyfunc wrapper answers the same numbers from long-format bars
    frame = pd.concat(bars.values()).assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))
    pyfunc = ForecasterPyfunc.from_bundle_dir(contract_models[name]).predict(None, frame)
    for i, ticker in enumerate(TICKERS):
        rows = pyfunc[pyfunc["ticker"] == ticker].sort_values("step")
        np.testing.assert_allclose(rows["close"], forecast.median[i], rtol=1e-5)
        np.testing.assert_allclose(rows["lower"], forecast.lower[i], rtol=1e-5)
        np.testing.assert_allclose(rows["upper"], forecast.upper[i], rtol=1e-5)

    # and so does the service, over HTTP, for the registered version
    body = {
        "model": f"contract-{name}",
        "series": [{"id": t, "history": registry.history(t, BARS)} for t in TICKERS],
    }
    response = contract_client.post("/forecast", json=body)
    assert response.status_code == 200, response.text
    for i, series in enumerate(response.json()["forecasts"]):
        points = series["points"]
        np.testing.assert_allclose([p["close"] for p in points], forecast.median[i], rtol=1e-5)
        np.testing.assert_allclose([p["lower"] for p in points], forecast.lower[i], rtol=1e-5)
        np.testing.assert_allclose([p["upper"] for p in points], forecast.upper[i], rtol=1e-5)
