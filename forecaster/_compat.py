"""Import paths of the flat layout (0.1.0), kept for one release.

Until 0.2 the package was one folder: ``forecaster.predict``, ``forecaster.tracking``,
``forecaster.pyfunc_model`` and so on. Code written against those paths, and a model logged by
0.1.0 and loaded by ``mlflow.pyfunc`` in a process that already imported this package (its entry
file imports ``forecaster.pyfunc_model``), still finds them here: each old name is the new module
itself (one module object, not a copy), with a DeprecationWarning naming the new path.
``forecaster.train`` and ``forecaster.evaluate`` are not among them: they are the API's functions.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED = {  # old flat module -> its module now
    "rules": "data.rules",
    "sources": "data.sources",
    "yahoo": "data.yahoo",
    "storage": "data.storage",
    "calendar": "data.calendar",
    "windows": "data.windows",
    "models": "model.networks",
    "scaling": "model.scaling",
    "feed": "model.feed",
    "distributed": "model.distributed",
    "calibration": "model.calibration",
    "artifact": "model.artifact",
    "device": "model.device",
    "predict": "model.predictor",
    "batch": "model.batch",
    "baselines": "evaluation.baselines",
    "scoring": "evaluation.scoring",
    "significance": "evaluation.significance",
    "backtest_file": "evaluation.backtest_file",
    "plots": "evaluation.plots",
    "tracking": "registry.tracking",
    "pyfunc_model": "registry.pyfunc_model",
    "pyfunc_entry": "registry.pyfunc_entry",
    "job": "run.steps",
    "tracked": "run.tracked",
    "cli": "interface.cli",
    "console": "interface.console",
    "progress": "interface.progress",
    "overrides": "interface.overrides",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.target}; the old path goes in 0.3", DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The module ran when it was imported under its own name."""


class MovedModules(importlib.abc.MetaPathFinder):
    """Finds ``forecaster.<old>`` as the module that holds it now."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __package__ or name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(f"{__package__}.{MOVED[name]}"))


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
