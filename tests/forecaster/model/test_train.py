"""forecaster.model.fit and forecaster.run.steps.run_training: reproducible on CPU, reports every epoch,
LR schedule as a pure function of the step, early stopping that keeps the best weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import random_ohlc

from forecaster.config import DataConfig, ModelConfig, TrainConfig
from forecaster.errors import DataError
from forecaster.model import fit as train_module
from forecaster.model.artifact import load_bundle
from forecaster.model.fit import fit, learning_rate
from forecaster.run.steps import TrainOutcome, run_training, split_windows

DATA = DataConfig(lookback=12, horizon=3)
MODEL = ModelConfig(arch="gru", hidden_size=8, num_layers=1, dropout=0.0)
TRAIN = TrainConfig(epochs=2, batch_size=32, warmup_steps=2, seed=7, device="cpu")


class FakeTracker:
    def __init__(self) -> None:
        self.logged: list[tuple[dict[str, float], int | None]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.logged.append((dict(metrics), step))


def train_once(bundle_dir: Path, model: ModelConfig = MODEL, train: TrainConfig = TRAIN) -> TrainOutcome:
    return run_training(random_ohlc(days=160, seed=3), DATA, model, train, bundle_dir)


@pytest.mark.parametrize("mode", ["n-to-1", "seq2seq"])
def test_same_seed_and_data_give_the_same_losses_and_metrics_on_cpu(tmp_path: Path, mode: str) -> None:
    model = ModelConfig(arch="lstm", mode=mode, hidden_size=8, num_layers=2, dropout=0.2)
    train = TrainConfig(epochs=2, batch_size=32, warmup_steps=2, seed=7, device="cpu", teacher_forcing=0.5)
    first = train_once(tmp_path / "a", model, train)
    second = train_once(tmp_path / "b", model, train)

    losses = [(s.train_loss, s.val_loss) for s in first.fit.history]
    assert losses == [(s.train_loss, s.val_loss) for s in second.fit.history]
    assert first.metrics == second.metrics
    assert first.metrics["model"]["mae"]  # the test split was scored
    for name, tensor in first.forecaster.model.state_dict().items():
        assert torch.equal(tensor, second.forecaster.model.state_dict()[name])
    # a different seed gives a different fit (the seed is what fixes it)
    third = train_once(tmp_path / "c", model, train.model_copy(update={"seed": 8}))
    assert [s.train_loss for s in third.fit.history] != [s.train_loss for s in first.fit.history]


def test_run_training_saves_a_bundle_that_predicts_like_the_returned_forecaster(tmp_path: Path) -> None:
    outcome = train_once(tmp_path / "bundle")
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.meta["val_start"] == f"{outcome.windows.split.val_start:%Y-%m-%d}"
    assert bundle.meta["tickers"] == ["AAA", "BBB"]
    assert bundle.transform == outcome.windows.train.transform
    assert outcome.backtest is not None
    assert {"model", "naive", "drift"} <= set(outcome.metrics)
    # the backtest covers exactly the test origins, scored with the returned forecaster
    assert len(outcome.backtest.actual) == len(outcome.windows.test_origins)
    panel = outcome.windows.panel
    X = panel.gather(outcome.windows.test_origins, DATA.lookback, DATA.horizon).X
    # the backtest forecasts in chunks, predict in one call: the same numbers up to float32 rounding of a batch
    median = outcome.forecaster.predict_windows(X).median
    np.testing.assert_allclose(outcome.backtest.forecasts["model"], median, rtol=1e-6)


def test_fit_reports_each_epoch_to_the_tracker(tmp_path: Path) -> None:
    windows = split_windows(random_ohlc(days=160), DATA)
    tracker = FakeTracker()
    result = fit(
        MODEL,
        TrainConfig(epochs=3, batch_size=64, warmup_steps=1, patience=5, device="cpu"),
        windows.train,
        windows.val,
        tracker=tracker,
    )

    assert [step for _, step in tracker.logged] == [1, 2, 3]
    for (metrics, _), stats in zip(tracker.logged, result.history, strict=True):
        assert set(metrics) == {"train_loss", "val_loss", "lr", "windows_per_s"}
        assert metrics["train_loss"] == stats.train_loss and metrics["val_loss"] == stats.val_loss


def test_fit_stops_early_and_restores_the_best_validation_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation losses are scripted (not left to a CPU's floating point): best at epoch 2, then
    worse for `patience` epochs, so fit must stop after epoch 4 with epoch 2's weights."""
    windows = split_windows(random_ohlc(days=160), DATA)
    scripted = iter([0.50, 0.40, 0.45, 0.41, 0.30, 0.20])
    snapshots: list[dict[str, torch.Tensor]] = []

    def scripted_loss(model: torch.nn.Module, *_: object) -> float:
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return next(scripted)

    monkeypatch.setattr(train_module, "evaluate_loss", scripted_loss)
    config = TrainConfig(epochs=6, batch_size=64, warmup_steps=1, patience=2, device="cpu")
    result = fit(MODEL, config, windows.train, windows.val)

    assert [s.val_loss for s in result.history] == [0.50, 0.40, 0.45, 0.41]
    assert result.stopped_early and result.best_epoch == 2 and result.best_val_loss == 0.40
    final = result.model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)  # epoch 2's weights are back
    assert not all(torch.equal(final[k], snapshots[-1][k]) for k in final)  # the last epoch's are not


def test_fit_without_improvement_after_the_first_epoch_keeps_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    windows = split_windows(random_ohlc(days=160), DATA)
    scripted = iter([0.3, 0.3, 0.31])  # equal is not better
    monkeypatch.setattr(train_module, "evaluate_loss", lambda *_: next(scripted))
    result = fit(MODEL, TrainConfig(epochs=5, batch_size=64, patience=2, device="cpu"), windows.train, windows.val)
    assert result.best_epoch == 1 and len(result.history) == 3 and result.stopped_early


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_the_floor() -> None:
    config = TrainConfig(lr=1e-2, warmup_steps=4, min_lr_ratio=0.1)
    total = 24
    rates = [learning_rate(step, total, config) for step in range(total + 1)]
    assert rates[:4] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2])
    assert rates[4] == pytest.approx(1e-2)
    assert rates[14] == pytest.approx(1e-3 + 0.5 * 9e-3 * (1 + math.cos(math.pi * 0.5)))
    assert rates[total] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[4:], rates[5:], strict=False))


def test_the_network_forecasts_the_data_horizon(tmp_path: Path) -> None:
    """The horizon has one owner (DataConfig); the network's output size is derived from it."""
    outcome = train_once(tmp_path / "bundle")
    windows = outcome.windows.panel.gather(outcome.windows.test_origins[:2], DATA.lookback, DATA.horizon).X
    assert outcome.forecaster.predict_windows(windows).quantiles.shape == (2, DATA.horizon, len(MODEL.quantiles))


def test_fit_refuses_an_empty_training_set() -> None:
    windows = split_windows(random_ohlc(days=160), DATA)
    empty = type(windows.train)(windows.panel, windows.train.origins[:0], 12, 3, windows.train.transform)
    with pytest.raises(ValueError, match="no training windows"):
        fit(MODEL, TRAIN, empty, windows.val)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["n-to-1", "seq2seq"])
def test_training_on_cuda_with_mixed_precision_lowers_the_loss_and_loads_on_cpu(tmp_path: Path, mode: str) -> None:
    model = ModelConfig(arch="lstm", mode=mode, hidden_size=16, num_layers=1, dropout=0.0)
    train = TrainConfig(epochs=3, batch_size=32, warmup_steps=2, seed=7, device="cuda")
    outcome = train_once(tmp_path / "bundle", model, train)
    assert outcome.fit.device.startswith("cuda")
    assert outcome.fit.history[-1].train_loss < outcome.fit.history[0].train_loss
    bundle = load_bundle(tmp_path / "bundle")  # weights were saved as CPU tensors
    assert all(t.device.type == "cpu" for t in bundle.state_dict.values())


def test_training_on_the_cpu_takes_the_configured_thread_count(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        train_once(tmp_path / "one", train=TRAIN.model_copy(update={"threads": 1}))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        train_once(tmp_path / "default", train=TRAIN.model_copy(update={"threads": 0}))  # 0: torch's own
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("mode", ["n-to-1", "seq2seq"])
def test_zero_epochs_give_the_untrained_network_which_is_the_ewma_random_walk(tmp_path: Path, mode: str) -> None:
    """train.epochs 0: no step is taken and the bundle is not recalibrated, so the model is the random
    walk with Gaussian quantiles in units of the window's EWMA volatility: its median is the last
    close (MAE = naive's) and its pinball loss that of the ewma baseline (same EWMA up to its window)."""
    model = ModelConfig(arch="gru", mode=mode, hidden_size=8, num_layers=1, dropout=0.0)
    outcome = run_training(
        random_ohlc(tickers=("AAA", "BBB", "CCC"), days=400, seed=2),
        DataConfig(lookback=60, horizon=3),
        model,
        TrainConfig(epochs=0, device="cpu"),
        tmp_path / "bundle",
    )

    assert outcome.fit.history == [] and outcome.fit.best_epoch == 0 and math.isfinite(outcome.fit.best_val_loss)
    assert not outcome.calibration.offsets.any() and (outcome.calibration.shrink == 1.0).all()
    metrics = outcome.metrics
    np.testing.assert_allclose(metrics["model"]["mae"], metrics["naive"]["mae"], rtol=1e-6)
    np.testing.assert_allclose(metrics["model"]["spl"], metrics["ewma"]["spl"], rtol=0.01)


def test_a_frame_its_caller_validated_is_not_validated_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The API validates the frame once: a split-like jump is reported once, not by every step, and
    a ticker too short for one window is still refused by the training step."""
    import logging

    import forecaster

    bars = random_ohlc(tickers=("AAA", "BBB"), days=200, seed=3)
    jump = (bars["ticker"] == "AAA") & (bars.index >= 150)
    bars.loc[jump, ["open", "high", "low", "close"]] /= 2.0  # a 2:1 split left unadjusted
    with caplog.at_level(logging.WARNING):
        forecaster.train(bars, track=False, lookback=12, horizon=3, epochs=1, hidden_size=8, device="cpu")
    assert sum("unadjusted split" in r.getMessage() for r in caplog.records) == 1

    short = random_ohlc(tickers=("AAA",), days=10, seed=1)
    with pytest.raises(DataError, match="too few rows"):
        run_training(short, DATA, MODEL, TRAIN, tmp_path / "short", validated=True)
