"""The fit loop: seed, build batches, AdamW with clipping, validate, early-stop, restore best."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np
import torch
from torch import nn

from forecaster.config import ModelConfig, TrainConfig
from forecaster.device import autocast, resolve_device
from forecaster.models import build_network, pinball_loss
from forecaster.scaling import WindowTransform
from forecaster.windows import Panel

log = logging.getLogger(__name__)
EVAL_BATCH = 4096
FEATURE_CHUNK = 16_384


class Tracker(Protocol):
    """Where training reports; forecaster.tracking implements it with MLflow, tests with a fake."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x[B,T,F], s[B,S], y[B,H]


@dataclass(frozen=True)
class WindowSet:
    """Windows named by their origin rows in a panel, plus the transform that scales them.

    The scaled inputs of every window are computed once, in chunks, on first use (every epoch
    and every ensemble member reads them again; a batch is then a gather, not a transform)."""

    panel: Panel
    origins: np.ndarray
    lookback: int
    horizon: int
    transform: WindowTransform

    def __len__(self) -> int:
        return len(self.origins)

    @cached_property
    def _scaled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        chunks = [self.scaled(self.origins[i : i + FEATURE_CHUNK]) for i in range(0, len(self), FEATURE_CHUNK)]
        if not chunks:
            return self.scaled(self.origins)
        x, s, y, sigma = (np.concatenate(parts) for parts in zip(*chunks, strict=True))
        return x, s, y, sigma

    def scaled(self, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """x[N,T,F], s[N,S], y[N,H] (targets in volatility units) and sigma[N] of the windows ending at origins."""
        windows = self.panel.gather(origins, self.lookback, self.horizon)
        features = self.transform.features(windows.X)
        return features.seq, features.scalars, self.transform.targets(windows.Y, features), features.sigma

    @property
    def sigma(self) -> np.ndarray:
        """Each window's volatility at its origin (what turns z back into returns)."""
        return self._scaled[3]

    def tensors(self, idx: np.ndarray, device: torch.device) -> Batch:
        """The batch of the windows at positions idx, on `device`."""
        x, s, y = (a[idx] for a in self._scaled[:3])
        return torch.from_numpy(x).to(device), torch.from_numpy(s).to(device), torch.from_numpy(y).to(device)


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    lr: float
    seconds: float
    windows_per_s: float


@dataclass
class FitResult:
    model: nn.Module
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False
    device: str = "cpu"


@dataclass
class FitHooks:
    """Optional callbacks for a progress display; training itself never prints."""

    on_epoch_start: Callable[[int, int], None] | None = None  # (epoch, n_batches)
    on_batch: Callable[[float], None] | None = None  # (loss)
    on_epoch_end: Callable[[EpochStats], None] | None = None


def learning_rate(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio; a pure function of the step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (config.lr - floor) * (1.0 + math.cos(math.pi * progress))


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def fit(
    model_config: ModelConfig,
    train_config: TrainConfig,
    train: WindowSet,
    val: WindowSet,
    tracker: Tracker | None = None,
    hooks: FitHooks | None = None,
) -> FitResult:
    """Train one fresh network; returns it with the weights of the best validation epoch."""
    if len(train) == 0:
        raise ValueError("train: no training windows; use more data or a shorter lookback/horizon")
    hooks = hooks or FitHooks()
    rng = seed_everything(train_config.seed)
    device = resolve_device(train_config.device)
    model = build_network(model_config, train.horizon).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    n_batches = math.ceil(len(train) / train_config.batch_size)
    if train_config.max_batches_per_epoch:
        n_batches = min(n_batches, train_config.max_batches_per_epoch)
    total_steps = n_batches * train_config.epochs
    monitor = val if len(val) else train
    if not len(val):
        log.warning("no validation windows: early stopping monitors the training loss")

    result = FitResult(model=model, device=str(device))
    best_state = copy.deepcopy(model.state_dict())
    bad_epochs, step = 0, 0
    for epoch in range(1, train_config.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = rng.permutation(len(train))
        if hooks.on_epoch_start:
            hooks.on_epoch_start(epoch, n_batches)
        losses = []
        for b in range(n_batches):
            idx = order[b * train_config.batch_size : (b + 1) * train_config.batch_size]
            lr = learning_rate(step, total_steps, train_config)
            losses.append(
                train_step(model, optimizer, train.tensors(idx, device), lr, model_config, train_config, device)
            )
            step += 1
            if hooks.on_batch:
                hooks.on_batch(losses[-1])
        val_loss = evaluate_loss(model, monitor, model_config.quantiles, device)
        seconds = time.perf_counter() - started
        seen = min(len(train), n_batches * train_config.batch_size)
        stats = EpochStats(epoch, float(np.mean(losses)), val_loss, lr, seconds, seen / seconds)
        result.history.append(stats)
        if tracker is not None:
            tracker.log_metrics(
                {"train_loss": stats.train_loss, "val_loss": val_loss, "lr": lr, "windows_per_s": stats.windows_per_s},
                step=epoch,
            )
        if hooks.on_epoch_end:
            hooks.on_epoch_end(stats)
        if val_loss < result.best_val_loss - 1e-7:
            result.best_val_loss, result.best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs >= train_config.patience:
                result.stopped_early = True
                log.info("early stop at epoch %d (best %d)", epoch, result.best_epoch)
                break
    model.load_state_dict(best_state)
    model.eval()
    return result


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    lr: float,
    model_config: ModelConfig,
    train_config: TrainConfig,
    device: torch.device,
) -> float:
    """One optimiser step on a batch (x[B,T,F], s[B,S], y[B,H]) at learning rate `lr`; returns the loss."""
    x, s, y = batch
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(device):
        pred = model(x, s, target=y, teacher_forcing=train_config.teacher_forcing)
        loss = pinball_loss(pred.float(), y, model_config.quantiles)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate_loss(model: nn.Module, windows: WindowSet, quantiles: tuple[float, ...], device: torch.device) -> float:
    """Mean pinball loss over every window of a set, in eval mode."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(windows), EVAL_BATCH):
        idx = np.arange(start, min(start + EVAL_BATCH, len(windows)))
        x, s, y = windows.tensors(idx, device)
        with autocast(device):
            pred = model(x, s)
        total += float(pinball_loss(pred.float(), y, quantiles)) * len(idx)
        count += len(idx)
    return total / max(count, 1)


@torch.no_grad()
def predict_scaled(
    model: nn.Module, windows: WindowSet, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network outputs z[N,H,Q], targets z[N,H] and each window's volatility sigma[N] over a set."""
    model.eval()
    preds, targets, sigmas = [], [], []
    for start in range(0, len(windows), EVAL_BATCH):
        idx = np.arange(start, min(start + EVAL_BATCH, len(windows)))
        x, s, y = windows.tensors(idx, device)
        with autocast(device):
            preds.append(model(x, s).float().cpu().numpy())
        targets.append(y.cpu().numpy())
        sigmas.append(windows.sigma[idx])
    return np.concatenate(preds), np.concatenate(targets), np.concatenate(sigmas)
