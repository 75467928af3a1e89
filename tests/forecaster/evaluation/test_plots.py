"""forecaster.evaluation.plots: the forecast figure names the band it draws."""

from __future__ import annotations

import numpy as np
from factories import random_ohlc

from forecaster.data.windows import Panel
from forecaster.evaluation import backtest as evaluate
from forecaster.evaluation.plots import band_label, forecast_figure


def test_the_band_is_labelled_by_its_quantile_levels() -> None:
    assert band_label((0.1, 0.5, 0.9)) == "model band q0.1-q0.9 (80%)"
    assert band_label((0.025, 0.1, 0.5, 0.9, 0.975)) == "model band q0.025-q0.975 (95%)"


def test_the_forecast_figure_legend_names_the_models_band() -> None:
    panel = Panel.from_frame(random_ohlc(tickers=("AAA", "BBB"), days=60))
    levels = (0.05, 0.5, 0.95)

    def predict(X: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
        last = X[:, -1, 3].astype(np.float64)[:, None, None]
        return last * np.array([0.95, 1.0, 1.05])[None, None, :] * np.ones((1, 3, 1)), levels

    result = evaluate.backtest(predict, panel, 10, 3, evaluate.rolling_origins(panel, 10, 3))
    figure = forecast_figure(result, step=2)
    labels = {text.get_text() for ax in figure.axes for text in ax.get_legend().get_texts()}
    assert "model band q0.05-q0.95 (90%)" in labels and "actual" in labels
