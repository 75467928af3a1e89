"""forecaster.model.artifact and forecaster.model.predictor: the bundle rebuilds the same network from JSON +
safetensors (no pickle), and Forecaster.predict is the transform around that network."""

from __future__ import annotations

import datetime as dt
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import random_ohlc
from safetensors import safe_open

from forecaster.config import DataConfig, ModelConfig
from forecaster.data.windows import Panel
from forecaster.errors import DataError, ForecasterError
from forecaster.model.artifact import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE, load_bundle, save_bundle
from forecaster.model.calibration import Calibration
from forecaster.model.networks import build_model
from forecaster.model.predictor import Forecaster
from forecaster.model.scaling import WindowTransform

LOOKBACK, HORIZON = 12, 3
DATA = DataConfig(lookback=LOOKBACK, horizon=HORIZON)
TRANSFORM = WindowTransform(lookback=LOOKBACK, seq_len=LOOKBACK // 2)
CALIBRATION = Calibration(np.array([[-0.1, 0.0, 0.2]] * HORIZON), np.array([0.5, 0.0, 1.0]))


def random_weights_model(config: ModelConfig) -> torch.nn.Module:
    """A network with every weight random (a zero head would hide a lost tensor)."""
    torch.manual_seed(3)
    model = build_model(config, HORIZON)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model.eval()


def scaled_inputs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    features = TRANSFORM.features(price_windows()[:n])
    return torch.from_numpy(features.seq), torch.from_numpy(features.scalars)


def price_windows(n_tickers: int = 2) -> np.ndarray:
    panel = Panel.from_frame(random_ohlc(tickers=("AAA", "BBB", "CCC")[:n_tickers], days=40))
    return panel.gather(panel.origins(LOOKBACK, HORIZON, need_future=False), LOOKBACK, HORIZON).X


def test_bundle_is_json_and_safetensors_and_loads_without_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ModelConfig(train_levels=(), hidden_size=8, num_layers=1, dropout=0.0)
    model = random_weights_model(config)
    save_bundle(tmp_path, model, config, DATA, TRANSFORM)

    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    stored = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert stored["format_version"] == FORMAT_VERSION
    assert stored["model"]["arch"] == config.arch and stored["model"]["quantiles"] == [0.1, 0.5, 0.9]
    assert stored["data"]["lookback"] == LOOKBACK and stored["data"]["horizon"] == HORIZON
    assert stored["transform"] == TRANSFORM.state()
    assert not (tmp_path / WEIGHTS_FILE).read_bytes().startswith(b"\x80")  # not a pickle stream
    with safe_open(str(tmp_path / WEIGHTS_FILE), framework="pt") as weights:  # pure tensors, by name
        assert set(weights.keys()) == set(model.state_dict())

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the loader must not unpickle anything")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    rebuilt = load_bundle(tmp_path).build(torch.device("cpu"))
    x, s = scaled_inputs(3)
    with torch.no_grad():
        assert torch.equal(rebuilt(x, s), model(x, s))


def test_load_rejects_another_format_version(tmp_path: Path) -> None:
    config = ModelConfig(train_levels=(), hidden_size=8, num_layers=1, dropout=0.0)
    save_bundle(tmp_path, build_model(config, HORIZON), config, DATA, TRANSFORM)
    stored = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**stored, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ForecasterError, match=f"format_version {FORMAT_VERSION + 1} is not supported"):
        load_bundle(tmp_path)


def test_load_of_a_missing_bundle_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ForecasterError, match="config.json"):
        load_bundle(tmp_path / "nowhere")


def test_load_rejects_weights_that_do_not_fit_the_config(tmp_path: Path) -> None:
    small = ModelConfig(train_levels=(), hidden_size=8, num_layers=1, dropout=0.0)
    save_bundle(tmp_path, build_model(small, HORIZON), small, DATA, TRANSFORM)
    stored = json.loads((tmp_path / CONFIG_FILE).read_text())
    stored["model"]["hidden_size"] = 16
    (tmp_path / CONFIG_FILE).write_text(json.dumps(stored))
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_bundle(tmp_path).build(torch.device("cpu"))


@pytest.mark.parametrize("mode", ["n-to-1", "seq2seq"])
def test_forecaster_predict_is_transform_then_model_then_calibration_then_inverse(tmp_path: Path, mode: str) -> None:
    config = ModelConfig(train_levels=(), mode=mode, hidden_size=8, num_layers=1, dropout=0.0)
    model = random_weights_model(config)
    save_bundle(tmp_path, model, config, DATA, TRANSFORM, CALIBRATION)
    forecaster = Forecaster(load_bundle(tmp_path), device="cpu")
    X = price_windows()

    forecast = forecaster.predict_windows(X)

    features = TRANSFORM.features(X)
    with torch.no_grad():
        z = model(torch.from_numpy(features.seq), torch.from_numpy(features.scalars)).numpy()
    raw = TRANSFORM.to_prices(z, features)
    expected = TRANSFORM.to_prices(CALIBRATION.apply(z, 1), features)
    assert forecast.quantiles.shape == (len(X), HORIZON, 3)
    np.testing.assert_allclose(forecast.quantiles, expected, rtol=1e-6)
    np.testing.assert_allclose(forecaster.predict_windows(X, calibrated=False).quantiles, raw, rtol=1e-6)
    np.testing.assert_array_equal(forecast.lower, forecast.quantiles[..., 0])
    np.testing.assert_array_equal(forecast.upper, forecast.quantiles[..., 2])
    # one series' history: the forecast from its last L bars (extra older bars are ignored)
    history = np.concatenate([X[0, :5], X[3]])
    np.testing.assert_allclose(forecaster.predict_history(history).quantiles[0], expected[3], rtol=1e-5)


def test_a_median_shrunk_to_zero_is_the_last_close(tmp_path: Path) -> None:
    config = ModelConfig(train_levels=(), hidden_size=8, num_layers=1)
    save_bundle(tmp_path, build_model(config, HORIZON), config, DATA, TRANSFORM, CALIBRATION)  # untrained
    X = price_windows()
    forecast = Forecaster(load_bundle(tmp_path), device="cpu").predict_windows(X)
    np.testing.assert_allclose(forecast.median[:, 1], X[:, -1, 3], rtol=1e-6)  # shrink 0 at step 2
    assert (forecast.lower < forecast.median).all() and (forecast.median < forecast.upper).all()


def test_forecaster_rejects_windows_of_the_wrong_length(tmp_path: Path) -> None:
    config = ModelConfig(train_levels=(), hidden_size=8, num_layers=1, dropout=0.0)
    save_bundle(tmp_path, build_model(config, HORIZON), config, DATA, TRANSFORM)
    forecaster = Forecaster(load_bundle(tmp_path), device="cpu")
    with pytest.raises(ValueError, match=f"expected shape \\[N, {LOOKBACK}, 4\\]"):
        forecaster.predict_windows(np.ones((2, LOOKBACK - 1, 4)))
    with pytest.raises(ValueError, match=f"at least lookback = {LOOKBACK}"):
        forecaster.predict_history(np.ones((LOOKBACK - 1, 4)))
    assert forecaster.predict_windows(np.ones((0, LOOKBACK, 4))).quantiles.shape == (0, HORIZON, 3)


@pytest.mark.gpu
def test_bundle_saved_from_cuda_loads_on_cpu_with_close_forecasts(tmp_path: Path) -> None:
    config = ModelConfig(train_levels=(), hidden_size=8, num_layers=1, dropout=0.0)
    model = random_weights_model(config).to("cuda")
    save_bundle(tmp_path, model, config, DATA, TRANSFORM)
    bundle = load_bundle(tmp_path)
    assert all(t.device.type == "cpu" for t in bundle.state_dict.values())
    X = price_windows()
    on_cpu = Forecaster(bundle, device="cpu").predict_windows(X).quantiles
    on_gpu = Forecaster(bundle, device="cuda").predict_windows(X).quantiles  # bf16 autocast on CUDA
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=2e-2)


@pytest.mark.parametrize("bad", ["01/02/2013", "1577836800", None])
def test_a_window_s_last_date_is_read_by_the_one_iso_parser(tmp_path: Path, bad: object) -> None:
    config = ModelConfig(train_levels=(), hidden_size=8, num_layers=1, dropout=0.0)
    save_bundle(tmp_path, random_weights_model(config), config, DATA, TRANSFORM)
    forecaster = Forecaster(load_bundle(tmp_path), device="cpu")
    bars = price_windows(1)[0]
    dates = [f"2013-01-{d:02d}" for d in range(1, LOOKBACK + 1)]

    assert forecaster.window(bars, dates=dates).last_date == dt.date(2013, 1, LOOKBACK)
    with pytest.raises(DataError, match=r"^history: the last bar's date"):
        forecaster.window(bars, dates=[*dates[:-1], bad])
