"""forecaster.evaluation.calibration_plot: the curve drawn is each forecast's hit rate per level at
the chosen step, beside the diagonal."""

from __future__ import annotations

import numpy as np

from forecaster.evaluation.calibration_plot import calibration_figure
from forecaster.evaluation.plots import close

REPORT = {
    "ewma": {"curve": {"nominal": [0.1, 0.5, 0.9], "empirical": [[0.05, 0.5, 0.95], [0.08, 0.5, 0.93]]}},
    "model": {"curve": {"nominal": [0.1, 0.5, 0.9], "empirical": [[0.12, 0.48, 0.91], [0.2, 0.5, 0.8]]}},
}


def test_the_calibration_figure_draws_each_forecasts_hit_rates_at_the_step_and_the_diagonal() -> None:
    figure = calibration_figure(REPORT, step=2)
    [ax] = figure.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["calibrated", "model", "ewma"]  # the model first
    np.testing.assert_allclose(lines["model"].get_xdata(), [0.1, 0.5, 0.9])
    np.testing.assert_allclose(lines["model"].get_ydata(), [0.2, 0.5, 0.8])
    np.testing.assert_allclose(lines["ewma"].get_ydata(), [0.08, 0.5, 0.93])
    np.testing.assert_allclose(lines["calibrated"].get_ydata(), [0.0, 1.0])
    assert "2 trading day(s) ahead" in ax.get_title()
    close(figure)
