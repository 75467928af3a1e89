"""Typed, frozen configuration: what the data, the network and the fit loop are."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

FEATURES: tuple[str, ...] = ("open", "high", "low", "close")
ARCHES: tuple[str, ...] = ("lstm", "gru", "rnn")
MODES: tuple[str, ...] = ("n-to-1", "seq2seq")
BAD_ROW_POLICIES: tuple[str, ...] = ("fail", "drop")


@dataclass(frozen=True)
class DataConfig:
    """How bars become windows: T days in, H closes out, and the calendar split."""

    lookback: int = 60
    horizon: int = 5
    val_fraction: float = 0.15  # share of the calendar (dates) held for validation
    test_fraction: float = 0.15  # share of the calendar held for the test split
    bad_rows: str = "fail"  # fail | drop (drop warns with a count)
    features: tuple[str, ...] = FEATURES

    def __post_init__(self) -> None:
        _check_positive("lookback", self.lookback, minimum=2)
        _check_positive("horizon", self.horizon, minimum=1)
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 0.5:
                raise ValueError(f"{name}: expected a value in [0, 0.5), got {value}")
        if self.bad_rows not in BAD_ROW_POLICIES:
            raise ValueError(f"bad_rows: expected one of {BAD_ROW_POLICIES}, got '{self.bad_rows}'")
        if tuple(self.features) != FEATURES:
            raise ValueError(f"features: expected {FEATURES}, got {tuple(self.features)}")


@dataclass(frozen=True)
class ModelConfig:
    """The network: backbone cell, shape (N-to-1 or seq2seq) and quantile outputs."""

    arch: str = "lstm"
    mode: str = "n-to-1"
    horizon: int = 5
    n_features: int = 4
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.1
    bidirectional: bool = False  # N-to-1 encoder only
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise ValueError(f"arch: expected one of {ARCHES}, got '{self.arch}'")
        if self.mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got '{self.mode}'")
        _check_positive("horizon", self.horizon, minimum=1)
        _check_positive("hidden_size", self.hidden_size, minimum=1)
        _check_positive("num_layers", self.num_layers, minimum=1)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a value in [0, 1), got {self.dropout}")
        if self.bidirectional and self.mode == "seq2seq":
            raise ValueError("bidirectional: only the n-to-1 encoder can be bidirectional")
        qs = tuple(float(q) for q in self.quantiles)
        if not qs or any(not 0.0 < q < 1.0 for q in qs) or list(qs) != sorted(set(qs)):
            raise ValueError(f"quantiles: expected distinct increasing values in (0, 1), got {qs}")
        if 0.5 not in qs:
            raise ValueError(f"quantiles: the median 0.5 must be one of them, got {qs}")
        object.__setattr__(self, "quantiles", qs)

    @property
    def median_index(self) -> int:
        return self.quantiles.index(0.5)


@dataclass(frozen=True)
class TrainConfig:
    """The fit loop: optimiser, schedule, early stopping, seed and device."""

    epochs: int = 30
    batch_size: int = 256
    lr: float = 2e-3
    min_lr_ratio: float = 0.1  # cosine decay floor, as a share of lr
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    patience: int = 5
    seed: int = 42
    device: str = "auto"
    teacher_forcing: float = 0.5  # seq2seq only: share of steps fed the true previous close
    stride: int = 1  # training origins every `stride` days
    max_batches_per_epoch: int | None = None  # cap on steps per epoch (None = all windows)

    def __post_init__(self) -> None:
        _check_positive("epochs", self.epochs, minimum=1)
        _check_positive("batch_size", self.batch_size, minimum=1)
        _check_positive("stride", self.stride, minimum=1)
        if self.lr <= 0:
            raise ValueError(f"lr: expected a positive value, got {self.lr}")
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing: expected a value in [0, 1], got {self.teacher_forcing}")
        if self.patience < 1:
            raise ValueError(f"patience: expected at least 1, got {self.patience}")


def build_configs(
    *,
    lookback: int = 60,
    horizon: int = 5,
    arch: str = "lstm",
    mode: str = "n-to-1",
    hidden: int = 64,
    layers: int = 2,
    dropout: float = 0.1,
    bidirectional: bool = False,
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    bad_rows: str = "fail",
    **train: Any,
) -> tuple[DataConfig, ModelConfig, TrainConfig]:
    """The three configs from the flat option names the CLI and the pipeline share; the
    horizon is given once and used by both data and model. Other keywords are TrainConfig's."""
    data = DataConfig(
        lookback=lookback, horizon=horizon, val_fraction=val_fraction, test_fraction=test_fraction, bad_rows=bad_rows
    )
    model = ModelConfig(
        arch=arch,
        mode=mode,
        horizon=horizon,
        hidden_size=hidden,
        num_layers=layers,
        dropout=dropout,
        bidirectional=bidirectional,
        quantiles=quantiles,
    )
    return data, model, TrainConfig(**train)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from `to_dict` output; unknown keys are an error."""
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


def _check_positive(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "to_dict", "from_dict"]
