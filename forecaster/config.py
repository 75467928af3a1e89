"""Typed, frozen configuration: what the data, the network and the fit loop are.

The one owner of every hyperparameter: each is declared once here, with its default, its
validation and its description. Derived values (the network's horizon, the feature count,
the median's index) are derived, never stored twice. Every entry point addresses a setting by
its dotted name (``data.lookback``, ``model.hidden_size``, ``train.lr``): `forecaster train`
(flags, ``--data.lookback 30`` and ``--config FILE``), `forecaster retrain` (its ``training:``
block in YAML, environment and flags) and the tests (`TrainingConfig.with_overrides`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

FEATURES: tuple[str, ...] = ("open", "high", "low", "close")  # the F axis of every raw window, in order
CLOSE: int = FEATURES.index("close")
N_FEATURES: int = len(FEATURES)
# What the network reads (forecaster.model.scaling makes them, in units of the window's volatility):
SEQ_FEATURES: tuple[str, ...] = ("return", "range", "body", "gap", "level")  # per bar, the last seq_len bars
SCALAR_FEATURES: tuple[str, ...] = ("vol_level", "vol_vs_long", "range_vs_close", "vol_vs_short", "trend")
N_SEQ_FEATURES: int = len(SEQ_FEATURES)
N_SCALAR_FEATURES: int = len(SCALAR_FEATURES)
MEDIAN: float = 0.5
C = TypeVar("C", bound=BaseModel)


def _comma_list(value: Any) -> Any:
    """'0.1,0.5,0.9' (a flag or an environment variable) -> ['0.1', '0.5', '0.9']; '' (or a list of
    such texts, as a command line parser gives them) -> [] and the items of each."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return value
    items: list[Any] = []
    for item in value:
        items += [v.strip() for v in item.split(",") if v.strip()] if isinstance(item, str) else [item]
    return items


class Section(BaseModel):
    """A frozen config block: unknown keys are an error, values are validated on creation."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# Bars the recurrent encoder reads by default: its quality is the same reading the last 10, 20,
# 60 or 119 bars of a 120-bar window (its memory is short; the older bars reach the network as the
# volatility and trend scalars), and its cost grows with every bar (benchmarks/RESULTS.md 8.6).
ENCODER_STEPS = 20


class DataConfig(Section):
    """How bars become windows: T days in, H closes out, and the calendar split."""

    lookback: int = Field(120, ge=3, description="days of history per window (volatility and trend features)")
    seq_len: int | None = Field(
        None,
        ge=2,
        description=f"T: the last days of the window the recurrent encoder reads (none: {ENCODER_STEPS}, "
        "or lookback - 1 if shorter)",
    )
    horizon: int = Field(5, ge=1, description="H: trading days ahead to forecast")
    val_fraction: float = Field(0.15, ge=0.0, lt=0.5, description="share of the dates held for validation")
    test_fraction: float = Field(0.15, ge=0.0, lt=0.5, description="share of the dates held for the test split")
    bad_rows: Literal["fail", "drop"] = Field("fail", description="bad input rows: fail, or drop with a warning")
    splits: Literal["warn", "fail", "adjust"] = Field(
        "warn",
        description="jumps that look like unadjusted stock splits: warn, fail, or adjust (back-adjust the earlier "
        "prices by the split ratio, logged per ticker and date)",
    )

    @model_validator(mode="after")
    def _seq_within_lookback(self) -> DataConfig:
        if self.seq_len is not None and self.seq_len >= self.lookback:
            raise ValueError(f"seq_len: must be below lookback ({self.lookback}), got {self.seq_len}")
        return self

    @property
    def min_rows(self) -> int:
        """Bars a ticker needs for one window with known targets: lookback of history + horizon after."""
        return self.lookback + self.horizon

    @property
    def encoder_steps(self) -> int:
        """T: the bars the recurrent encoder reads (seq_len, else ENCODER_STEPS within the lookback)."""
        return self.seq_len if self.seq_len is not None else min(ENCODER_STEPS, self.lookback - 1)


class ModelConfig(Section):
    """The network: backbone cell, shape (N-to-1 or seq2seq) and quantile outputs."""

    arch: Literal["lstm", "gru", "rnn"] = Field("gru", description="recurrent cell")
    mode: Literal["n-to-1", "seq2seq"] = Field("n-to-1", description="all steps at once, or an unrolled decoder")
    hidden_size: int = Field(32, ge=1, description="hidden units per layer")
    num_layers: int = Field(1, ge=1, description="stacked recurrent layers")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout between layers and after the joining layer")
    bidirectional: bool = Field(False, description="bidirectional encoder (n-to-1 only)")
    head_size: int = Field(64, ge=1, description="width of the layer joining the encoder state and the scalars")
    ensemble: int = Field(1, ge=1, le=32, description="networks trained from successive seeds, quantiles averaged")
    quantiles: Annotated[tuple[float, ...], BeforeValidator(_comma_list)] = Field(
        (0.1, 0.5, 0.9), description="quantile levels, increasing, in (0, 1), including the median 0.5"
    )

    train_levels: Annotated[tuple[float, ...], BeforeValidator(_comma_list)] = Field(
        (0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975),
        description="more levels the network learns besides the served ones (a finer grid of the distribution "
        "regularises the served quantiles); empty: only the served ones",
    )

    @field_validator("quantiles")
    @classmethod
    def _levels(cls, qs: tuple[float, ...]) -> tuple[float, ...]:
        if not qs or any(not 0.0 < q < 1.0 for q in qs) or list(qs) != sorted(set(qs)):
            raise ValueError(f"expected distinct increasing values in (0, 1), got {qs}")
        if MEDIAN not in qs:
            raise ValueError(f"the median 0.5 must be one of them, got {qs}")
        return qs

    @field_validator("train_levels")
    @classmethod
    def _train_levels(cls, qs: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 < q < 1.0 for q in qs) or list(qs) != sorted(set(qs)):
            raise ValueError(f"expected distinct increasing values in (0, 1), got {qs}")
        return qs

    @model_validator(mode="after")
    def _bidirectional_needs_n_to_1(self) -> ModelConfig:
        if self.bidirectional and self.mode == "seq2seq":
            raise ValueError("bidirectional: only the n-to-1 encoder can be bidirectional")
        return self

    @property
    def median_index(self) -> int:
        """Where the median sits among the served `quantiles`."""
        return self.quantiles.index(MEDIAN)

    @property
    def network_levels(self) -> tuple[float, ...]:
        """Every level the network outputs and is trained on: the served ones and `train_levels`."""
        return tuple(sorted(set(self.quantiles) | set(self.train_levels)))

    @property
    def network_median_index(self) -> int:
        return self.network_levels.index(MEDIAN)

    @property
    def served_index(self) -> tuple[int, ...]:
        """Positions of the served `quantiles` among `network_levels`."""
        return tuple(self.network_levels.index(q) for q in self.quantiles)


class TrainConfig(Section):
    """The fit loop: optimiser, schedule, early stopping, seed and device."""

    epochs: int = Field(
        10,
        ge=0,
        description="most epochs (early stopping may end sooner); 0: no training, the untrained network is "
        "the EWMA-volatility random walk (a servable baseline model)",
    )
    batch_size: int = Field(512, ge=1, description="windows per optimiser step")
    lr: float = Field(1e-3, gt=0.0, description="peak learning rate (AdamW)")
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="cosine decay floor, as a share of lr")
    warmup_steps: int = Field(50, ge=0, description="linear warm-up steps")
    weight_decay: float = Field(1e-4, ge=0.0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0.0, description="gradient norm clip")
    patience: int = Field(2, ge=1, description="early-stopping patience in epochs")
    seed: int = Field(42, description="seed of every random number generator")
    device: str = Field("auto", description="auto | cpu | cuda[:N]")
    threads: int = Field(
        1,
        ge=0,
        description="torch threads when training on the CPU (0: torch's default, one per core); the small "
        "recurrent matmuls gain nothing from more, and spare threads spin when the cores are shared",
    )
    teacher_forcing: float = Field(0.5, ge=0.0, le=1.0, description="seq2seq: share of steps fed the true close")
    stride: int = Field(1, ge=1, description="training origins every `stride` days")
    max_batches_per_epoch: int | None = Field(None, ge=1, description="cap on steps per epoch (none = all windows)")
    nproc_per_node: int = Field(
        1, ge=1, description="training processes on this machine (DDP; one per GPU on CUDA); batch_size stays global"
    )
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="torch.distributed backend of several processes: auto = nccl on CUDA, gloo on CPU"
    )
    data_on: Literal["auto", "device", "host"] = Field(
        "auto",
        description="training windows kept on the device (copied once, batches gathered there) or on the host "
        "(a batch copied per step); auto = device on CUDA, host on CPU",
    )


class TrainingConfig(Section):
    """Everything a training run is configured by, addressed as ``data.*``, ``model.*``, ``train.*``."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    def with_overrides(self, overrides: Mapping[str, Any]) -> TrainingConfig:
        """A copy with dotted settings replaced: ``{"data.lookback": 30, "train.lr": "1e-3"}``.
        Values may be text (as from a flag); unknown names are an error naming them."""
        return TrainingConfig.model_validate(merge_dotted(self.model_dump(), overrides, "training"))


ARCHES: tuple[str, ...] = get_args(ModelConfig.model_fields["arch"].annotation)
BAD_ROWS: tuple[str, ...] = get_args(DataConfig.model_fields["bad_rows"].annotation)
SPLITS: tuple[str, ...] = get_args(DataConfig.model_fields["splits"].annotation)
MODES: tuple[str, ...] = get_args(ModelConfig.model_fields["mode"].annotation)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """`value` if it is one of `choices`, else ValueError naming `name` (a setting or a flag)."""
    if value not in choices:
        raise ValueError(f"{name}: expected {' or '.join(repr(c) for c in choices)}, got {value!r}")
    return value


# Flat option names of `forecaster train` (and flat keys of retrain's YAML and flags), each a
# shortcut for one dotted setting; the setting itself owns the default and the validation.
SHORTCUTS: dict[str, str] = {
    "lookback": "data.lookback",
    "horizon": "data.horizon",
    "val_fraction": "data.val_fraction",
    "test_fraction": "data.test_fraction",
    "bad_rows": "data.bad_rows",
    "arch": "model.arch",
    "mode": "model.mode",
    "hidden": "model.hidden_size",
    "layers": "model.num_layers",
    "dropout": "model.dropout",
    "bidirectional": "model.bidirectional",
    "quantiles": "model.quantiles",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "patience": "train.patience",
    "teacher_forcing": "train.teacher_forcing",
    "seed": "train.seed",
    "device": "train.device",
    "nproc_per_node": "train.nproc_per_node",
}


def merge_dotted(base: Mapping[str, Any], overrides: Mapping[str, Any], root: str) -> dict[str, Any]:
    """Nested `base` with ``a.b=value`` items set; a name that is not in `base` is an error."""
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node: dict[str, Any] = merged
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                raise ValueError(f"{root}: unknown setting '{dotted}'; known: {', '.join(dotted_names(base))}")
            node[part] = child = dict(child)
            node = child
        if leaf not in node or isinstance(node[leaf], dict):
            raise ValueError(f"{root}: unknown setting '{dotted}'; known: {', '.join(dotted_names(base))}")
        node[leaf] = value
    return merged


def dotted_names(tree: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Every leaf of a nested mapping as a dotted name."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from dotted_names(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def describe(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """(dotted name, description, default) of every setting of a config model, nested ones included."""
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from describe(kind, f"{prefix}{name}.")
        else:
            default = info.get_default(call_default_factory=True)
            yield f"{prefix}{name}", info.description or "", default


def quantile_column(level: float, prefix: str = "") -> str:
    """The column of a quantile level in every table we write: 'q0.1', or 'ewma_q0.1' for a baseline."""
    return f"{prefix}q{level:g}"


def to_dict(config: BaseModel) -> dict[str, Any]:
    """A JSON-ready dict of a config block (tuples become lists)."""
    return config.model_dump(mode="json")


def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Rebuild a config block from `to_dict` output; unknown keys are an error."""
    return cls.model_validate(dict(data))


__all__ = [
    "ARCHES",
    "CLOSE",
    "MODES",
    "FEATURES",
    "N_FEATURES",
    "SHORTCUTS",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "TrainingConfig",
    "describe",
    "from_dict",
    "quantile_column",
    "to_dict",
]
