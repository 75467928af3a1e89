"""The fit loop: seed, build batches (`forecaster.model.feed`), AdamW with clipping, validate,
early-stop, restore best.

One loop for one process and for many (DDP under torchrun, or processes `fit` starts itself when
``train.nproc_per_node`` > 1): `forecaster.model.distributed` owns the process group, and in one process
its collectives are the identity."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from forecaster.config import ModelConfig, TrainConfig
from forecaster.model import distributed
from forecaster.model.device import autocast, resolve_device
from forecaster.model.feed import Batch, Batches, WindowSet, keeps_on_device
from forecaster.model.networks import build_network, pinball_loss

log = logging.getLogger(__name__)
EVAL_BATCH = 4096
# On a GPU, reading a loss waits for every queued kernel: the progress display gets a fresh loss
# every PROGRESS_EVERY steps (and the last one read in between); on the CPU, every step (no wait).
PROGRESS_EVERY = 25
IMPROVEMENT = 1e-7  # a validation loss must beat the best by this much to count as better


class Tracker(Protocol):
    """Where training reports; forecaster.registry.tracking implements it with MLflow, tests with a fake."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...


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
    """Train one fresh network; returns it with the weights of the best validation epoch.

    Under a launcher (torchrun, or the processes started for ``train.nproc_per_node`` > 1) every
    rank runs this in lockstep: the network in DistributedDataParallel, each rank its share of
    every global batch (`EpochPlan`), validation shared out and summed, rank 0's early-stopping
    decision applied on every rank; rank 0 alone reports to `tracker` and `hooks`.
    """
    if len(train) == 0:
        raise ValueError("train: no training windows; use more data or a shorter lookback/horizon")
    if train_config.nproc_per_node > 1 and not distributed.launched():
        return fit_in_processes(model_config, train_config, train, val, tracker, hooks)
    hooks = hooks or FitHooks()
    rng = seed_everything(train_config.seed)  # the same permutations on every rank
    group = distributed.setup_for(train_config)
    device = group.device(resolve_device(train_config.device))
    network = build_network(model_config, train.horizon).to(device)
    model = group.wrap(network, device)  # DDP copies rank 0's initial weights to every rank
    if group.is_distributed:
        torch.manual_seed(distributed.rank_seed(train_config.seed, group.rank))
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    plan = distributed.EpochPlan.of(len(train), train_config, group.world_size)
    total_steps = plan.n_batches * train_config.epochs
    resident = keeps_on_device(train_config.data_on, device)
    batches = Batches(train, device, resident)
    monitor = Batches(val, device, resident) if len(val) else batches
    if not len(val):
        log.warning("no validation windows: early stopping monitors the training loss")
    reports = group.is_main

    result = FitResult(model=network, device=str(device))
    best_state = copy.deepcopy(network.state_dict())
    if train_config.epochs == 0:  # the network as built: its head forecasts the random walk (the EWMA baseline)
        result.best_val_loss = evaluate_loss(network, monitor, model_config.network_levels, device, group)
        network.eval()
        return result
    bad_epochs, step, lr = 0, 0, learning_rate(0, total_steps, train_config)
    for epoch in range(1, train_config.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = batches.index(plan.shard(rng.permutation(len(train)), group.rank))
        if reports and hooks.on_epoch_start:
            hooks.on_epoch_start(epoch, plan.n_batches)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # read once per epoch, not per step
        shown = math.nan
        for b in range(plan.n_batches):
            idx = order[b * plan.rank_batch : (b + 1) * plan.rank_batch]
            lr = learning_rate(step, total_steps, train_config)
            loss = train_step(model, optimizer, batches.batch(idx), lr, model_config, train_config, device)
            loss_sum += loss
            step += 1
            if reports and hooks.on_batch:
                if device.type == "cpu" or b % PROGRESS_EVERY == 0:
                    shown = float(loss)
                hooks.on_batch(shown)
        train_loss = float(group.all_reduce_mean(loss_sum)) / plan.n_batches  # equal shares: the batches' mean
        val_loss = evaluate_loss(network, monitor, model_config.network_levels, device, group)
        improved = val_loss < result.best_val_loss - IMPROVEMENT
        stop = not improved and bad_epochs + 1 >= train_config.patience
        # Rank 0's figures and decision on every rank: all stop at the same epoch with the same best weights.
        train_loss, val_loss, improved, stop = group.broadcast_object((train_loss, val_loss, improved, stop))
        seconds = time.perf_counter() - started
        stats = EpochStats(epoch, train_loss, val_loss, lr, seconds, plan.windows_per_epoch / seconds)
        result.history.append(stats)
        if reports and tracker is not None:
            tracker.log_metrics(
                {"train_loss": stats.train_loss, "val_loss": val_loss, "lr": lr, "windows_per_s": stats.windows_per_s},
                step=epoch,
            )
        if reports and hooks.on_epoch_end:
            hooks.on_epoch_end(stats)
        if improved:
            result.best_val_loss, result.best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = copy.deepcopy(network.state_dict())
        else:
            bad_epochs += 1
            if stop:
                result.stopped_early = True
                log.info("early stop at epoch %d (best %d)", epoch, result.best_epoch)
                break
    network.load_state_dict(best_state)
    network.eval()
    return result


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    lr: float,
    model_config: ModelConfig,
    train_config: TrainConfig,
    device: torch.device,
) -> torch.Tensor:
    """One optimiser step on a batch (x[B,T,F], s[B,S], y[B,H]) at learning rate `lr`.

    Returns the batch's loss as a 0-dim tensor on the device, not a float: reading it waits for
    the GPU, so the caller decides when (fit: once per epoch)."""
    x, s, y = batch
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(device):
        pred = model(x, s, target=y, teacher_forcing=train_config.teacher_forcing)
        loss = pinball_loss(pred.float(), y, model_config.network_levels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # under DDP: gradients averaged across ranks here, so the clip and the step agree
    nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    windows: WindowSet | Batches,
    quantiles: tuple[float, ...],
    device: torch.device,
    group: distributed.Context | None = None,
) -> float:
    """Mean pinball loss over every window of a set, in eval mode.

    In a process group each rank scores positions rank, rank + world, ... and the sums are added
    across ranks: every rank returns the loss over the whole set."""
    group = group or distributed.Context()
    batches = windows if isinstance(windows, Batches) else Batches(windows, device, resident=False)
    model.eval()
    positions = batches.index(np.arange(group.rank, len(batches), group.world_size))  # one copy, not one per chunk
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss x windows, windows
    for start in range(0, len(positions), EVAL_BATCH):
        chunk = positions[start : start + EVAL_BATCH]
        x, s, y = batches.batch(chunk)
        with autocast(device):
            pred = model(x, s)
        sums[0] += pinball_loss(pred.float(), y, quantiles).double() * len(chunk)
        sums[1] += len(chunk)
    total, count = group.all_reduce_sum(sums).tolist()
    return float(total / max(count, 1.0))


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


@dataclass(frozen=True)
class _RankOutcome:
    """What rank 0 of `fit_in_processes` sends back: weights as numpy arrays (no shared memory
    that would outlive its process) and the curves."""

    weights: dict[str, np.ndarray]
    history: list[EpochStats]
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    device: str


def fit_in_processes(
    model_config: ModelConfig,
    train_config: TrainConfig,
    train: WindowSet,
    val: WindowSet,
    tracker: Tracker | None = None,
    hooks: FitHooks | None = None,
) -> FitResult:
    """`fit` on ``train.nproc_per_node`` new processes of this machine (one per GPU on CUDA).

    The caller stays out of the group: rank 0's reports reach `tracker` and `hooks` here as they
    happen, and rank 0's network comes back with its curves. So a training run, its MLflow run
    and the retraining pipeline stay in one process while the fit is spread over several."""
    n = train_config.nproc_per_node
    device = resolve_device(train_config.device)
    if device.type == "cuda" and n > torch.cuda.device_count():
        raise ValueError(f"nproc_per_node: {n} processes need {n} GPUs, {torch.cuda.device_count()} visible")
    distributed.EpochPlan.of(
        len(train), train_config, n
    )  # a plan that cannot work fails here, before any process starts
    hooks = hooks or FitHooks()
    wanted = [name for name in ("on_epoch_start", "on_batch", "on_epoch_end") if getattr(hooks, name) is not None]

    def deliver(message: tuple[str, tuple[Any, ...]]) -> None:
        name, args = message
        if name == "log_metrics" and tracker is not None:
            tracker.log_metrics(*args)
        elif name in wanted:
            getattr(hooks, name)(*args)

    log.info("training on %d processes", n)
    outcomes = distributed.run_local(
        _fit_on_rank, (model_config, train_config, train, val, tracker is not None, wanted), n, deliver
    )
    first = outcomes[0]
    assert first is not None, "rank 0 returns its network"
    network = build_network(model_config, train.horizon)
    network.load_state_dict({k: torch.from_numpy(v) for k, v in first.weights.items()})
    result = FitResult(network.to(first.device).eval(), first.history, first.best_epoch, first.best_val_loss)
    result.stopped_early, result.device = first.stopped_early, first.device
    return result


class _SentTracker:
    """A Tracker in a training process whose calls travel to the caller of run_local."""

    def __init__(self, send: distributed.Send) -> None:
        self.send = send

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.send(("log_metrics", (metrics, step)))


def _sent_hook(send: distributed.Send, name: str, *args: Any) -> None:
    send((name, args))


def _fit_on_rank(
    model_config: ModelConfig,
    train_config: TrainConfig,
    train: WindowSet,
    val: WindowSet,
    tracked: bool,
    hook_names: list[str],
    send: distributed.Send,
) -> _RankOutcome | None:
    """One process of fit_in_processes: the ordinary fit, in the group run_local set up."""
    hooks = FitHooks(**{name: partial(_sent_hook, send, name) for name in hook_names})
    result = fit(model_config, train_config, train, val, _SentTracker(send) if tracked else None, hooks)
    if not distributed.current().is_main:
        return None
    weights = {k: v.detach().cpu().numpy() for k, v in result.model.state_dict().items()}
    return _RankOutcome(
        weights, result.history, result.best_epoch, result.best_val_loss, result.stopped_early, result.device
    )
