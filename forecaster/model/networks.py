"""Networks only: tensor math from scaled windows to scaled quantile forecasts.

Legend: B batch, T input steps, H horizon, F per-bar features, S scalar features, D hidden
size, M head width, Q quantile levels of the network (`ModelConfig.network_levels`: the served
ones and the extra training levels), K ensemble members. Every network maps
``(x[B,T,F], s[B,S]) -> y[B,H,Q]`` in volatility units of the log ratio to the last close
(forecaster.model.scaling), and an untrained network forecasts the random walk: median 0 (the last
close) and the Gaussian quantiles ``sqrt(h) * Phi^-1(q)``, so training starts at the
volatility baseline and only moves away from it where the data says so.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from forecaster.config import MEDIAN, N_SCALAR_FEATURES, N_SEQ_FEATURES, ModelConfig

CELLS: dict[str, type[nn.LSTM] | type[nn.GRU] | type[nn.RNN]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
MEDIAN_SCALE = 0.1  # the median moves 10x slower than the band: daily returns are mostly noise


def random_walk_prior(horizon: int, quantiles: tuple[float, ...]) -> torch.Tensor:
    """[H,Q] raw head outputs that `order_quantiles` turns into sqrt(h) * Phi^-1(q)."""
    normal = NormalDist()
    prior = torch.zeros(horizon, len(quantiles))
    median = quantiles.index(MEDIAN)
    for h in range(horizon):
        z = [math.sqrt(h + 1) * normal.inv_cdf(q) for q in quantiles]
        for i in range(len(quantiles)):
            if i != median:
                gap = abs(z[i] - z[i + 1 if i < median else i - 1])
                prior[h, i] = math.log(math.expm1(gap))  # inverse softplus
    return prior


def order_quantiles(raw: torch.Tensor, median_index: int) -> torch.Tensor:
    """raw[..., Q] -> monotone quantiles: raw median, then cumulative positive gaps out from it."""
    median = raw[..., median_index : median_index + 1]
    gaps = F.softplus(raw)
    below = gaps[..., :median_index].flip(-1).cumsum(-1).flip(-1)
    above = gaps[..., median_index + 1 :].cumsum(-1)
    return torch.cat([median - below, median, median + above], dim=-1)


class QuantileHead(nn.Module):
    """M features -> per step Q quantiles that never cross, starting at the random walk's."""

    def __init__(self, in_features: int, steps: int, horizon: int, config: ModelConfig) -> None:
        super().__init__()
        self.steps = steps  # outputs per call: H (n-to-1) or 1 (seq2seq, called per step)
        self.median_index = config.network_median_index
        self.proj = nn.Linear(in_features, steps * len(config.network_levels))
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.register_buffer("prior", random_walk_prior(horizon, config.network_levels))  # (H, Q)
        scale = torch.ones(len(config.network_levels))
        scale[config.network_median_index] = MEDIAN_SCALE
        self.register_buffer("scale", scale)

    def forward(self, features: torch.Tensor, step: int | None = None) -> torch.Tensor:
        raw = self.proj(features).unflatten(-1, (self.steps, -1)) * self.scale  # -> (B, steps, Q)
        prior = cast(torch.Tensor, self.prior)  # (H, Q); one row when called per step
        if step is not None:
            prior = prior[step : step + 1]
        return order_quantiles(raw + prior, self.median_index)


class Encoder(nn.Module):
    """x[B,T,F], s[B,S] -> [B,M]: the recurrent cell's last state joined with the scalars."""

    def __init__(self, config: ModelConfig, bidirectional: bool) -> None:
        super().__init__()
        self.config = config
        self.rnn = CELLS[config.arch](
            input_size=N_SEQ_FEATURES,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=bidirectional,
            batch_first=True,
        )
        directions = 2 if bidirectional else 1
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden_size * directions + N_SCALAR_FEATURES, config.head_size),
            nn.ReLU(),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, object]:
        check_input(x, s)
        out, state = self.rnn(x)  # -> (B, T, D * directions)
        if self.rnn.bidirectional:
            d = self.config.hidden_size
            last = torch.cat([out[:, -1, :d], out[:, 0, d:]], dim=-1)  # forward's last, backward's first
        else:
            last = out[:, -1]  # -> (B, D)
        return self.mlp(torch.cat([last, s], dim=-1)), state  # -> (B, M)


class DirectRNN(nn.Module):
    """N-to-1: the encoder's summary -> all H steps at once."""

    def __init__(self, config: ModelConfig, horizon: int) -> None:
        super().__init__()
        self.config = config
        self.horizon = horizon
        self.encoder = Encoder(config, config.bidirectional)
        self.head = QuantileHead(config.head_size, horizon, horizon, config)

    def forward(
        self, x: torch.Tensor, s: torch.Tensor, target: torch.Tensor | None = None, teacher_forcing: float = 0.0
    ) -> torch.Tensor:
        # x: (B, T, F), s: (B, S) -> (B, H, Q); target/teacher_forcing: a common signature
        summary, _ = self.encoder(x, s)
        return self.head(summary)


class Seq2SeqRNN(nn.Module):
    """Encoder-decoder: the decoder unrolls H steps, each fed the previous step's value.

    During training the fed value is the true previous target with probability
    ``teacher_forcing`` per step and batch, else the model's own median.
    """

    def __init__(self, config: ModelConfig, horizon: int) -> None:
        super().__init__()
        self.config = config
        self.horizon = horizon
        self.encoder = Encoder(config, bidirectional=False)
        self.decoder = CELLS[config.arch](
            1,
            config.hidden_size,
            config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.join = nn.Linear(config.hidden_size + config.head_size, config.head_size)
        self.head = QuantileHead(config.head_size, 1, horizon, config)

    def forward(
        self, x: torch.Tensor, s: torch.Tensor, target: torch.Tensor | None = None, teacher_forcing: float = 0.0
    ) -> torch.Tensor:
        # x: (B, T, F), s: (B, S), target: (B, H) scaled log ratios -> (B, H, Q)
        summary, state = self.encoder(x, s)
        previous = torch.zeros(x.shape[0], 1, 1, dtype=x.dtype, device=x.device)  # last close = 0
        steps = []
        for h in range(self.horizon):
            out, state = self.decoder(previous, state)  # -> (B, 1, D)
            features = torch.relu(self.join(torch.cat([out[:, -1], summary], dim=-1)))  # -> (B, M)
            step = self.head(features, step=h)  # -> (B, 1, Q)
            steps.append(step)
            median = self.config.network_median_index
            fed = step[:, :, median : median + 1]  # -> (B, 1, 1)
            if target is not None and self.training and teacher_forcing > 0.0:
                use_truth = torch.rand(x.shape[0], 1, 1, device=x.device) < teacher_forcing
                fed = torch.where(use_truth, target[:, h].reshape(-1, 1, 1).to(fed.dtype), fed)
            previous = fed
        return torch.cat(steps, dim=1)  # -> (B, H, Q)


class Ensemble(nn.Module):
    """K networks of one config, trained from different seeds; their quantiles averaged
    (an average of monotone quantile vectors is monotone)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(
        self, x: torch.Tensor, s: torch.Tensor, target: torch.Tensor | None = None, teacher_forcing: float = 0.0
    ) -> torch.Tensor:
        return torch.stack([m(x, s, target, teacher_forcing) for m in self.members]).mean(dim=0)  # -> (B, H, Q)


def check_input(x: torch.Tensor, s: torch.Tensor) -> None:
    if x.ndim != 3 or x.shape[-1] != N_SEQ_FEATURES:
        raise ValueError(f"x: expected shape [B, T, {N_SEQ_FEATURES}], got {list(x.shape)}")
    if s.ndim != 2 or s.shape != (x.shape[0], N_SCALAR_FEATURES):
        raise ValueError(f"s: expected shape [{x.shape[0]}, {N_SCALAR_FEATURES}], got {list(s.shape)}")


def build_network(config: ModelConfig, horizon: int) -> nn.Module:
    """One network for a ModelConfig and H steps: DirectRNN for n-to-1, Seq2SeqRNN for seq2seq."""
    return DirectRNN(config, horizon) if config.mode == "n-to-1" else Seq2SeqRNN(config, horizon)


def build_model(config: ModelConfig, horizon: int) -> nn.Module:
    """What an artifact holds: one network, or an Ensemble of `config.ensemble` of them."""
    if config.ensemble == 1:
        return build_network(config, horizon)
    return Ensemble([build_network(config, horizon) for _ in range(config.ensemble)])


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, quantiles: tuple[float, ...]) -> torch.Tensor:
    """Mean quantile (pinball) loss of pred[B,H,Q] against target[B,H]."""
    q = _levels(quantiles, pred.device, pred.dtype)  # -> (Q,)
    error = target.unsqueeze(-1) - pred  # -> (B, H, Q)
    return torch.maximum(q * error, (q - 1.0) * error).mean()


@lru_cache(maxsize=32)
def _levels(quantiles: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The levels as a tensor, made once per device and dtype: building it per step would copy
    from the host and make every CUDA step wait for the GPU."""
    return torch.tensor(quantiles, dtype=dtype, device=device)
