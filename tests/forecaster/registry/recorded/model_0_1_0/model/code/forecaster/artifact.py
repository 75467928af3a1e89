"""Self-describing model bundle: safetensors weights + JSON config. No pickle anywhere.

Layout of a bundle directory::

    config.json         {"format_version", "model", "data", "transform", "calibration", "meta"}
    weights.safetensors the network's state dict (CPU tensors)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from forecaster.calibration import Calibration
from forecaster.config import DataConfig, ModelConfig, from_dict, to_dict
from forecaster.errors import ForecasterError
from forecaster.models import build_model
from forecaster.scaling import WindowTransform

FORMAT_VERSION = 2  # 2: volatility-scaled windows, calibration; 1 (before) cannot be read: retrain
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"


@dataclass(frozen=True)
class Bundle:
    """Everything needed to rebuild a trained forecaster."""

    model_config: ModelConfig
    data_config: DataConfig
    transform: WindowTransform
    state_dict: dict[str, torch.Tensor]
    calibration: Calibration
    meta: dict[str, Any] = field(default_factory=dict)

    def build(self, device: torch.device) -> nn.Module:
        """Rebuild the network from config and load the weights strictly, on `device`."""
        model = build_model(self.model_config, self.data_config.horizon)
        model.load_state_dict(self.state_dict, strict=True)
        return model.to(device).eval()


def save_bundle(
    path: str | Path,
    model: nn.Module,
    model_config: ModelConfig,
    data_config: DataConfig,
    transform: WindowTransform,
    calibration: Calibration | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write the bundle directory; weights are moved to CPU so a GPU-trained model loads anywhere."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE))
    config = {
        "format_version": FORMAT_VERSION,
        "model": to_dict(model_config),
        "data": to_dict(data_config),
        "transform": transform.state(),
        "calibration": (
            calibration or Calibration.identity(data_config.horizon, len(model_config.network_levels))
        ).state(),
        "meta": meta or {},
    }
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    return path


def load_bundle(path: str | Path) -> Bundle:
    """Read a bundle directory written by `save_bundle`."""
    path = Path(path)
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ForecasterError(f"model bundle: cannot read {path / CONFIG_FILE}: {exc}") from exc
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ForecasterError(
            f"model bundle: format_version {version} is not supported (expected {FORMAT_VERSION}; "
            "a model from an older forecaster must be retrained)"
        )
    model_config = from_dict(ModelConfig, config["model"])
    data_config = from_dict(DataConfig, config["data"])
    return Bundle(
        model_config=model_config,
        data_config=data_config,
        transform=WindowTransform.from_state(config["transform"]),
        state_dict=load_file(str(path / WEIGHTS_FILE), device="cpu"),
        calibration=Calibration.from_state(
            config["calibration"], data_config.horizon, len(model_config.network_levels)
        ),
        meta=config.get("meta", {}),
    )
