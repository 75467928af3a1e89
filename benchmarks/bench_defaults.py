"""Why the defaults are the defaults: a few variants trained on the bundled sample with the
library's own job, scored on its test split (rolling origin, every origin) beside naive and drift.

    .venv/bin/python benchmarks/bench_defaults.py      # about 6 minutes on 2 quiet cores

One seed per variant: differences below ~0.01 MASE are noise. Prints one JSON line per variant.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from forecaster.config import DataConfig, ModelConfig, TrainConfig
from forecaster.data.sources import load_source
from forecaster.evaluation.backtest import summary
from forecaster.run.steps import run_training

VARIANTS: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "default: lstm n-to-1, lr 2e-3": ({}, {}),
    "gru n-to-1": ({"arch": "gru"}, {}),
    "lstm seq2seq": ({"mode": "seq2seq"}, {}),
    "lstm, lr 5e-4, weight decay 1e-2": ({}, {"lr": 5e-4, "weight_decay": 1e-2}),
    "lstm, dropout 0.3": ({"dropout": 0.3}, {}),
}
KEPT = ("mae", "mase", "dir_acc", "coverage")


def main() -> None:
    torch.set_num_threads(2)
    frame, _ = load_source("sample")
    for name, (model_overrides, train_overrides) in VARIANTS.items():
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            outcome = run_training(
                frame,
                DataConfig(),
                ModelConfig(**model_overrides),  # type: ignore[arg-type]
                TrainConfig(**{"device": "cpu", **train_overrides}),  # type: ignore[arg-type]
                Path(tmp) / "bundle",
            )
        scores = {k: round(v, 4) for k, v in summary(outcome.metrics).items() if k.split("_", 1)[1] in KEPT}
        row = {
            "variant": name,
            "epochs": len(outcome.fit.history),
            "best_epoch": outcome.fit.best_epoch,
            "seconds": round(time.perf_counter() - started),
            **scores,
        }
        print(json.dumps(row), flush=True)  # noqa: T201 - a benchmark's output is its report


if __name__ == "__main__":
    main()
