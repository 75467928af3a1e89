"""Logging a trained bundle as an MLflow pyfunc model (models-from-code: nothing pickled), with
its input example, signature and requirements; optionally registered under a name."""

from __future__ import annotations

import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.registry.store import registry_call

BUNDLE_ARTIFACT = "bundle"  # a logged model holds the bundle at artifacts/bundle
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")
PACKAGE_DIR = Path(__file__).parents[1]  # the whole forecaster package travels with a logged model
# what the pyfunc's code (forecaster.model.predictor and what it imports) needs, at the versions running here
PYFUNC_REQUIREMENTS = [
    # the public release (torch's "+cpu" local label is not on PyPI)
    f"{name}=={metadata.version(name).split('+')[0]}"
    for name in ("mlflow", "torch", "numpy", "pandas", "safetensors", "pydantic", "exchange_calendars")  # dates
]


@registry_call
def log_model(bundle_dir: Path, example: pd.DataFrame, registered_name: str | None = None) -> tuple[str, str | None]:
    """Log the bundle as a pyfunc model in the active run and optionally register it.
    Returns (model_uri, version)."""
    import mlflow
    from mlflow.models import infer_signature

    from forecaster.registry.pyfunc_model import ForecasterPyfunc

    output = ForecasterPyfunc.from_bundle_dir(bundle_dir).predict(None, example)
    with tempfile.TemporaryDirectory() as tmp:
        # the loader finds the bundle as artifacts/bundle, whatever the folder was called here
        stored = Path(tmp) / BUNDLE_ARTIFACT
        shutil.copytree(bundle_dir, stored)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_ENTRY),
            artifacts={BUNDLE_ARTIFACT: str(stored)},
            # the package travels with the model, so `mlflow models serve` works where only the
            # requirements below are installed (no `pip install forecaster`)
            code_paths=[str(PACKAGE_DIR)],
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=PYFUNC_REQUIREMENTS,
            registered_model_name=registered_name,
        )
    version = str(info.registered_model_version) if info.registered_model_version is not None else None
    return info.model_uri, version


def example_input(frame: pd.DataFrame, lookback: int, tickers: int = 2) -> pd.DataFrame:
    """The pyfunc input example: the last `lookback` bars of a few tickers, long format."""
    names = sorted(frame["ticker"].unique())[:tickers]
    parts = [frame[frame["ticker"] == t].tail(lookback) for t in names]
    example = pd.concat(parts)[["ticker", "date", "open", "high", "low", "close"]].reset_index(drop=True)
    example["date"] = example["date"].dt.strftime("%Y-%m-%d")
    for column in ("open", "high", "low", "close"):
        example[column] = example[column].astype(np.float64)
    return example
