"""forecaster: global LSTM/GRU forecasts of daily OHLC series, tracked in MLflow.

The Python API (forecaster.api) at the package root::

    import forecaster

    model = forecaster.load("models:/prices@champion")
    table = forecaster.forecast(model, bars)  # or model.forecast(bars)
    report = forecaster.evaluate(model, bars, from_date="2024-01-01")
    run = forecaster.train(bars, register_as="prices", alias="champion", **{"train.epochs": 5})

Its names are imported on first use (PEP 562), so ``import forecaster.config`` loads neither
torch nor MLflow and no module of the package imports the API back (no cycle).
``forecaster.train`` and ``forecaster.evaluate`` are also the training-loop and evaluation
modules: they stay those modules (``from forecaster import evaluate as ev; ev.score(...)``
keeps working) and calling one calls the API function of that name. Type checkers see them as
modules: typed code calls ``forecaster.api.train`` / ``forecaster.api.evaluate``.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "evaluate", "forecast", "load", "train"]

_API_FUNCTIONS = ("forecast", "load")  # forecaster.api's functions, looked up on first use
_CALLABLE_MODULES = ("evaluate", "train")  # submodules whose call is forecaster.api's function

if TYPE_CHECKING:
    from forecaster.api import forecast, load


class _CallableModule(ModuleType):
    """A submodule that can also be called: ``forecaster.train(...)`` is ``forecaster.api.train(...)``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from forecaster import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(ModuleType):
    """This package's module type: the import system binds every submodule here as it loads it,
    whoever imports it first, so this is the one place that makes train and evaluate callable."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _CALLABLE_MODULES and type(value) is ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    """The API's names on first use; any other name is an AttributeError, so that ``from forecaster
    import tracking`` goes on to import the submodule."""
    if name in _API_FUNCTIONS:
        from forecaster import api

        return getattr(api, name)
    if name in _CALLABLE_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
