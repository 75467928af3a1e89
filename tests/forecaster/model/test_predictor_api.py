"""Forecaster's notebook surface: predict_windows (arrays) vs forecast (frames), the deprecated
predict, and save -> forecaster.load of a bundle folder."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from factories import random_ohlc

from forecaster.config import DataConfig, ModelConfig
from forecaster.data.windows import Panel
from forecaster.model.artifact import load_bundle, save_bundle
from forecaster.model.networks import build_model
from forecaster.model.predictor import Forecaster
from forecaster.model.scaling import WindowTransform

LOOKBACK, HORIZON = 12, 3


@pytest.fixture()
def model(tmp_path: Path) -> Forecaster:
    """A forecaster with random weights (nothing trained: the names are what is tested)."""
    data, config = DataConfig(lookback=LOOKBACK, horizon=HORIZON), ModelConfig(hidden_size=4, train_levels=())
    torch.manual_seed(0)
    network = build_model(config, HORIZON)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.normal_(0.0, 0.3)
    save_bundle(tmp_path / "b", network, config, data, WindowTransform.for_data(data), meta={"note": "kept"})
    return Forecaster(load_bundle(tmp_path / "b"), device="cpu")


def windows() -> np.ndarray:
    panel = Panel.from_frame(random_ohlc(days=40))
    return panel.gather(panel.origins(LOOKBACK, HORIZON, need_future=False), LOOKBACK, HORIZON).X


def test_predict_windows_is_the_array_path_and_predict_its_deprecated_name(model: Forecaster) -> None:
    X = windows()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = model.predict_windows(X)  # no warning
    with pytest.warns(DeprecationWarning, match=r"predict\(X\) is renamed predict_windows\(X\)"):
        old = model.predict(X)
    np.testing.assert_array_equal(old.quantiles, new.quantiles)
    assert new.quantiles.shape == (len(X), HORIZON, 3)


def test_predict_with_a_frame_of_bars_is_a_type_error_pointing_to_forecast(model: Forecaster) -> None:
    bars = random_ohlc(days=40)
    for method in (model.predict, model.predict_windows):
        with pytest.raises(TypeError, match=r"takes model windows .* use model\.forecast\(bars\)"):
            method(bars)  # type: ignore[arg-type]
    table = model.forecast(bars)  # the frame path: a DataFrame
    assert isinstance(table, pd.DataFrame) and len(table) == 2 * HORIZON


def test_save_writes_a_bundle_folder_that_forecaster_load_reads_back(model: Forecaster, tmp_path: Path) -> None:
    import forecaster

    folder = model.save(tmp_path / "saved")

    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "weights.safetensors"]
    loaded = forecaster.load(folder, device="cpu")
    bars = random_ohlc(days=40)
    pd.testing.assert_frame_equal(loaded.forecast(bars), model.forecast(bars))
    assert loaded.bundle.meta == {"note": "kept"} and loaded.bundle.model_config == model.bundle.model_config
    model.save(folder)  # a bundle folder is overwritten
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="path: .*other' exists and is not an empty folder or a model bundle"):
        model.save(tmp_path / "other")
