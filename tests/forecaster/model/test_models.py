"""The model contract, for every arch x mode: output shape (B,H,Q), quantiles never cross,
the loss drops on tiny synthetic OHLC with a learnable signal, and the seq2seq decoder's
teacher forcing only acts in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from factories import sine_ohlc

from forecaster.config import ARCHES, MODES, N_SCALAR_FEATURES, N_SEQ_FEATURES, DataConfig, ModelConfig, TrainConfig
from forecaster.model.fit import evaluate_loss, fit
from forecaster.model.networks import (
    Ensemble,
    Seq2SeqRNN,
    build_model,
    order_quantiles,
    pinball_loss,
    random_walk_prior,
)
from forecaster.run.steps import SplitWindows, split_windows

LOOKBACK, HORIZON = 16, 3
STEPS = LOOKBACK // 2  # encoder steps of the raw inputs below (a network takes any number)
CPU = torch.device("cpu")


def inputs(batch: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random network inputs: x[B,T,F], s[B,S]."""
    return torch.randn(batch, STEPS, N_SEQ_FEATURES) * scale, torch.randn(batch, N_SCALAR_FEATURES) * scale


CONFIGS = [(arch, mode, False) for arch in ARCHES for mode in MODES] + [("lstm", "n-to-1", True)]


def tiny_config(
    arch: str = "lstm",
    mode: str = "n-to-1",
    bidirectional: bool = False,
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
) -> ModelConfig:
    return ModelConfig(
        arch=arch,
        mode=mode,
        train_levels=(),  # the network outputs the served levels only (see test_extra_training_levels...)
        hidden_size=8,
        num_layers=1,
        dropout=0.0,
        bidirectional=bidirectional,
        quantiles=quantiles,
    )


@pytest.fixture(scope="module")
def sine_windows() -> SplitWindows:
    """Windows of a deterministic sine: the next closes are a function of the last ones."""
    return split_windows(sine_ohlc(days=260), DataConfig(lookback=LOOKBACK, horizon=HORIZON))


def blind_loss(windows: SplitWindows, quantiles: tuple[float, ...]) -> float:
    """Pinball loss of the best forecast that ignores its input: each step's empirical quantiles."""
    _, _, y = windows.train.tensors(np.arange(len(windows.train)), CPU)
    const = np.quantile(y.numpy(), quantiles, axis=0).T  # -> (H, Q)
    pred = torch.from_numpy(np.broadcast_to(const, (len(y), *const.shape)).copy()).float()
    return float(pinball_loss(pred, y, quantiles))


@pytest.mark.parametrize(
    ("arch", "mode", "bidirectional"), CONFIGS, ids=[f"{a}-{m}{'-bi' if b else ''}" for a, m, b in CONFIGS]
)
def test_every_model_learns_a_predictable_signal(
    sine_windows: SplitWindows, arch: str, mode: str, bidirectional: bool
) -> None:
    config = tiny_config(arch, mode, bidirectional)
    train_config = TrainConfig(epochs=6, batch_size=32, lr=2e-2, warmup_steps=1, patience=6, seed=0, device="cpu")
    untrained = evaluate_loss(build_model(config, HORIZON), sine_windows.train, config.quantiles, CPU)

    result = fit(config, train_config, sine_windows.train, sine_windows.val)
    trained = evaluate_loss(result.model, sine_windows.train, config.quantiles, CPU)

    losses = [s.train_loss for s in result.history]
    assert losses[-1] < losses[0]
    assert trained < 0.5 * untrained
    # better than any forecast blind to the input: it uses the window
    assert trained < 0.6 * blind_loss(sine_windows, config.quantiles)

    with torch.no_grad():
        out = result.model(*inputs(7, scale=3.0))  # far outside the training data
    assert out.shape == (7, HORIZON, 3)
    assert (out.diff(dim=-1) >= 0).all(), "quantiles cross"


@pytest.mark.parametrize("mode", MODES)
def test_untrained_model_is_the_random_walk(mode: str) -> None:
    """Median 0 (the last close) and Gaussian quantiles sqrt(h) * Phi^-1(q): the volatility baseline."""
    config = tiny_config(mode=mode)
    with torch.no_grad():
        out = build_model(config, HORIZON).eval()(*inputs(4))
    assert (out[..., config.median_index] == 0.0).all()  # 0 = the last close: the naive forecast
    for h in range(HORIZON):
        expected = [-1.2815516 * np.sqrt(h + 1), 0.0, 1.2815516 * np.sqrt(h + 1)]
        np.testing.assert_allclose(out[:, h].numpy(), np.tile(expected, (4, 1)), atol=1e-5)


def test_random_walk_prior_orders_into_gaussian_quantiles() -> None:
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)
    z = order_quantiles(random_walk_prior(2, levels), median_index=2)
    np.testing.assert_allclose(
        z[1].numpy(), np.sqrt(2) * np.array([-1.6448536, -0.6744898, 0, 0.6744898, 1.6448536]), atol=1e-5
    )


def test_an_ensemble_averages_its_members() -> None:
    config = tiny_config().model_copy(update={"ensemble": 3})
    model = build_model(config, HORIZON).eval()
    assert isinstance(model, Ensemble) and len(model.members) == 3
    with torch.no_grad():
        for member in model.members:
            for parameter in member.parameters():
                parameter.normal_(0.0, 0.5)
        x, s = inputs(6)
        expected = torch.stack([m(x, s) for m in model.members]).mean(dim=0)
        assert torch.allclose(model(x, s), expected)
        assert (model(x, s).diff(dim=-1) >= 0).all()


def test_quantiles_never_cross_for_any_raw_output() -> None:
    raw = torch.randn(1000, 4, 5) * 10.0
    ordered = order_quantiles(raw, median_index=2)
    assert (ordered.diff(dim=-1) >= 0).all()
    assert torch.equal(ordered[..., 2], raw[..., 2])  # the median passes through unchanged


def test_bidirectional_encoder_reads_both_ends_of_the_window() -> None:
    model = build_model(tiny_config(bidirectional=True), HORIZON)
    assert "encoder.rnn.weight_ih_l0_reverse" in model.state_dict()
    assert model.encoder.mlp[0].in_features == 2 * 8 + N_SCALAR_FEATURES


def seq2seq_with_live_head(arch: str = "gru") -> Seq2SeqRNN:
    """A seq2seq model whose head is not zero, so what the decoder is fed shows in its output."""
    model = build_model(tiny_config(arch, "seq2seq"), HORIZON)
    assert isinstance(model, Seq2SeqRNN)
    torch.nn.init.normal_(model.head.proj.weight, 0.0, 1.0)
    torch.nn.init.normal_(model.join.weight, 0.0, 1.0)
    return model


@pytest.mark.parametrize("arch", ARCHES)
def test_seq2seq_teacher_forcing_changes_training_outputs(arch: str) -> None:
    model = seq2seq_with_live_head(arch).train()
    (x, s), target = inputs(8), torch.randn(8, HORIZON) * 5.0

    forced = model(x, s, target=target, teacher_forcing=1.0)
    free = model(x, s, target=target, teacher_forcing=0.0)

    assert torch.equal(forced[:, 0], free[:, 0])  # step 1 is fed the last close (0) either way
    assert not torch.allclose(forced[:, 1:], free[:, 1:])  # later steps see the true previous close
    assert torch.equal(free, model(x, s))  # no forcing: the target is ignored


@pytest.mark.parametrize("arch", ARCHES)
def test_seq2seq_eval_output_ignores_the_target(arch: str) -> None:
    model = seq2seq_with_live_head(arch).eval()
    x, s = inputs(8)
    with torch.no_grad():
        plain = model(x, s)
        given = model(x, s, target=torch.randn(8, HORIZON) * 5.0, teacher_forcing=1.0)
    assert torch.equal(plain, given)


def test_models_reject_inputs_of_the_wrong_shape() -> None:
    model = build_model(tiny_config(), HORIZON)
    x, s = inputs(2)
    with pytest.raises(ValueError, match=f"x: expected shape \\[B, T, {N_SEQ_FEATURES}\\]"):
        model(torch.randn(2, STEPS, N_SEQ_FEATURES + 1), s)
    with pytest.raises(ValueError, match=f"x: expected shape \\[B, T, {N_SEQ_FEATURES}\\]"):
        model(x[0], s)
    with pytest.raises(ValueError, match=f"s: expected shape \\[2, {N_SCALAR_FEATURES}\\]"):
        model(x, s[:1])


def test_pinball_loss_matches_hand_computation() -> None:
    pred = torch.tensor([[[-1.0, 0.0, 2.0]]])  # one window, one step, quantiles 0.1 / 0.5 / 0.9
    target = torch.tensor([[1.0]])
    # errors target - pred: 2, 1, -1 -> max(q e, (q-1) e): 0.2, 0.5, 0.1
    assert float(pinball_loss(pred, target, (0.1, 0.5, 0.9))) == pytest.approx((0.2 + 0.5 + 0.1) / 3)


@pytest.mark.parametrize(
    "bad",
    [
        dict(mode="seq2seq", bidirectional=True),
        dict(quantiles=(0.1, 0.9)),
        dict(quantiles=(0.9, 0.5, 0.1)),
        dict(arch="transformer"),
    ],
)
def test_model_config_rejects_impossible_models(bad: dict) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**bad)


def test_extra_training_levels_widen_the_network_and_serve_a_subset() -> None:
    config = ModelConfig(hidden_size=8, num_layers=1, train_levels=(0.05, 0.25, 0.75, 0.95))
    assert config.network_levels == (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
    assert config.served_index == (1, 3, 5) and config.network_median_index == 3
    with torch.no_grad():
        out = build_model(config, HORIZON).eval()(*inputs(2))
    assert out.shape == (2, HORIZON, 7)
    np.testing.assert_allclose(out[0, 0, list(config.served_index)].numpy(), [-1.2815516, 0.0, 1.2815516], atol=1e-5)
