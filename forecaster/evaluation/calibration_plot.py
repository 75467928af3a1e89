"""The calibration curve figure: each forecast's empirical level (hit rate) against its nominal level
at one step, from a `calibration_tests.calibration` report; the diagonal is perfect calibration."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files and MLflow, never a screen

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def calibration_figure(report: dict[str, dict[str, Any]], step: int = 1) -> Figure:
    """One line per forecast (the model first and thickest): x the nominal levels, y the share of
    actuals below each quantile `step` days ahead; the dotted diagonal is a calibrated forecast."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot([0.0, 1.0], [0.0, 1.0], color="grey", lw=0.8, ls=":", label="calibrated")
    for name in sorted(report, key=lambda n: (n != "model", n)):
        curve = report[name]["curve"]
        model = name == "model"
        ax.plot(
            curve["nominal"],
            curve["empirical"][step - 1],
            marker="o",
            lw=2.0 if model else 1.0,
            ms=5 if model else 3,
            alpha=1.0 if model else 0.7,
            label=name,
        )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("nominal level")
    ax.set_ylabel("share of actuals below the quantile")
    ax.set_title(f"Calibration curve, {step} trading day(s) ahead")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
