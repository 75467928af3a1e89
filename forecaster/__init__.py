"""forecaster: global LSTM/GRU forecasts of daily OHLC series, tracked in MLflow.

The package follows the path of the data (see DESIGN.md), one sub-package per stage, each
importing only the ones before it::

    data/        sources -> validate -> windows   (files, yfinance, the bundled sample; numpy/pandas)
    model/       scaling -> networks -> fit -> calibration -> artifact -> predictor, batch  (torch)
    evaluation/  backtest, baselines, scoring, significance, plots  (rolling origin)
    registry/    MLflow: store, runs, registry aliases, the pyfunc  (the only MLflow users)
    run/         one training run: steps, and the same run reported to MLflow
    api.py       the Python API below;  interface/  the command line

The Python API (forecaster.api) at the package root::

    import forecaster

    model = forecaster.load("models:/prices@champion")
    table = forecaster.forecast(model, bars)  # or model.forecast(bars)
    report = forecaster.evaluate(model, bars, from_date="2024-01-01")
    table = forecaster.backtest(model, bars)  # every rolling-origin forecast, a long DataFrame
    figure = forecaster.plot(table)  # a matplotlib Figure of a forecast or a backtest
    run = forecaster.train(bars, epochs=5, hidden_size=64, track=False)  # run.model forecasts

Its names are imported on first use (PEP 562), so ``import forecaster.config`` loads neither
torch nor MLflow and no module of the package imports the API back (no cycle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forecaster import _compat

__version__ = "0.1.0"
__all__ = ["__version__", "backtest", "evaluate", "forecast", "load", "plot", "train"]

_API_FUNCTIONS = (
    "backtest",
    "evaluate",
    "forecast",
    "load",
    "plot",
    "train",
)  # forecaster.api's, looked up on first use

_compat.install()  # the flat layout's import paths (forecaster.predict, ...) for one release

if TYPE_CHECKING:
    from forecaster.api import backtest, evaluate, forecast, load, plot, train


def __getattr__(name: str) -> Any:
    """The API's names on first use; any other name is an AttributeError, so that ``from forecaster
    import config`` goes on to import the submodule."""
    if name in _API_FUNCTIONS:
        from forecaster import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
