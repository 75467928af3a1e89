"""The registry's public surface for the CLI, the API, service/ and pipelines/: one import,
``from forecaster.registry import tracking``, then ``tracking.load_forecaster(...)``.

Each name is owned by the module it comes from (store: the store URI and its errors; runs:
experiments and runs; names: alias names and name rules; versions: registered versions and
aliases; logged_model: logging a bundle as a pyfunc model; references: the forms a model
reference takes; loading: the one loader). Callers look names up here at call time, so a test
that patches ``tracking.resolve_version`` patches what the service calls. The names of modules
that import MLflow or torch are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from forecaster.errors import redact
from forecaster.registry.names import CHALLENGER, CHAMPION, PREVIOUS, check_names
from forecaster.registry.references import FORMS, Reference, parse_reference
from forecaster.registry.store import (
    LOCAL_STORE,
    POSTGRES_DRIVER_SCHEME,
    POSTGRES_SCHEMES,
    STORE_CLIENT_DEFAULTS,
    STORE_ERROR_CHARS,
    configure,
    registry_errors,
    resolve_tracking_uri,
    store_uri,
)

if TYPE_CHECKING:
    from forecaster.registry.loading import ModelSource, bundle_folder, load_forecaster, parse_model_uri
    from forecaster.registry.logged_model import (
        BUNDLE_ARTIFACT,
        PACKAGE_DIR,
        PYFUNC_ENTRY,
        PYFUNC_REQUIREMENTS,
        example_input,
        log_model,
    )
    from forecaster.registry.runs import (
        EXPERIMENT,
        EXPERIMENT_KIND,
        EXPERIMENT_KIND_TAG,
        FAILURE_TAG,
        MAX_TAG_CHARS,
        NOTE_TAG,
        MlflowTracker,
        describe_run,
        ensure_experiment,
        fail_run,
        fail_running_runs,
        log_run_metrics,
        start_run,
        tag_run,
    )
    from forecaster.registry.store import STORE_ERRORS
    from forecaster.registry.versions import (
        MAX_VERSION,
        ModelRef,
        alias_version,
        delete_alias,
        describe_version,
        make_champion,
        model_registered,
        resolve_version,
        set_alias,
        set_version_tags,
    )

# The names whose modules import MLflow or torch (seconds): looked up on first use (PEP 562), so a
# command that reads a model folder, or only its --help, never imports MLflow.
_LAZY = {
    "forecaster.registry.loading": ("ModelSource", "bundle_folder", "load_forecaster", "parse_model_uri"),
    "forecaster.registry.logged_model": (
        "BUNDLE_ARTIFACT",
        "PACKAGE_DIR",
        "PYFUNC_ENTRY",
        "PYFUNC_REQUIREMENTS",
        "example_input",
        "log_model",
    ),
    "forecaster.registry.runs": (
        "EXPERIMENT",
        "EXPERIMENT_KIND",
        "EXPERIMENT_KIND_TAG",
        "FAILURE_TAG",
        "MAX_TAG_CHARS",
        "NOTE_TAG",
        "MlflowTracker",
        "describe_run",
        "ensure_experiment",
        "fail_run",
        "fail_running_runs",
        "log_run_metrics",
        "start_run",
        "tag_run",
    ),
    "forecaster.registry.store": ("STORE_ERRORS",),
    "forecaster.registry.versions": (
        "MAX_VERSION",
        "ModelRef",
        "alias_version",
        "delete_alias",
        "describe_version",
        "make_champion",
        "model_registered",
        "resolve_version",
        "set_alias",
        "set_version_tags",
    ),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    """A name of `_LAZY`, imported from its module on first use and kept here (so a test's patch of
    ``tracking.resolve_version`` still replaces what callers look up)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "BUNDLE_ARTIFACT",
    "CHALLENGER",
    "CHAMPION",
    "EXPERIMENT",
    "FORMS",
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "FAILURE_TAG",
    "LOCAL_STORE",
    "MAX_TAG_CHARS",
    "MAX_VERSION",
    "NOTE_TAG",
    "PACKAGE_DIR",
    "POSTGRES_DRIVER_SCHEME",
    "POSTGRES_SCHEMES",
    "PREVIOUS",
    "PYFUNC_ENTRY",
    "PYFUNC_REQUIREMENTS",
    "STORE_CLIENT_DEFAULTS",
    "STORE_ERRORS",
    "STORE_ERROR_CHARS",
    "MlflowTracker",
    "ModelRef",
    "ModelSource",
    "Reference",
    "alias_version",
    "bundle_folder",
    "check_names",
    "configure",
    "delete_alias",
    "describe_run",
    "describe_version",
    "ensure_experiment",
    "example_input",
    "fail_run",
    "make_champion",
    "fail_running_runs",
    "load_forecaster",
    "log_model",
    "log_run_metrics",
    "model_registered",
    "parse_model_uri",
    "parse_reference",
    "redact",
    "registry_errors",
    "resolve_tracking_uri",
    "resolve_version",
    "set_alias",
    "set_version_tags",
    "start_run",
    "store_uri",
    "tag_run",
]
