"""Networks only: tensor math from scaled windows to scaled quantile forecasts.

Legend: B batch, T input steps, H horizon, F=4 OHLC features, D hidden size, Q quantiles.
Every network maps ``x[B,T,F] -> y[B,H,Q]`` in the scaled log-ratio space, where 0 means
"no change from the last close" (the naive forecast), so an untrained head starts at naive.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forecaster.config import N_FEATURES, ModelConfig

CELLS: dict[str, type[nn.LSTM] | type[nn.GRU] | type[nn.RNN]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class QuantileHead(nn.Module):
    """D features -> H x Q quantiles that never cross: median plus softplus-cumulated gaps."""

    def __init__(self, in_features: int, horizon: int, config: ModelConfig) -> None:
        super().__init__()
        self.horizon = horizon
        self.n_quantiles = len(config.quantiles)
        self.median_index = config.median_index
        self.proj = nn.Linear(in_features, horizon * self.n_quantiles)
        nn.init.zeros_(self.proj.weight)  # start at the naive forecast with a small band
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        raw = self.proj(h).unflatten(-1, (self.horizon, self.n_quantiles))  # -> (B, H, Q)
        return order_quantiles(raw, self.median_index)


def order_quantiles(raw: torch.Tensor, median_index: int) -> torch.Tensor:
    """raw[..., Q] -> monotone quantiles: raw median, then cumulative positive gaps out from it."""
    median = raw[..., median_index : median_index + 1]
    gaps = F.softplus(raw)
    below = gaps[..., :median_index].flip(-1).cumsum(-1).flip(-1)
    above = gaps[..., median_index + 1 :].cumsum(-1)
    return torch.cat([median - below, median, median + above], dim=-1)


class DirectRNN(nn.Module):
    """N-to-1: the encoder's last hidden state -> all H steps at once."""

    def __init__(self, config: ModelConfig, horizon: int) -> None:
        super().__init__()
        self.config = config
        self.horizon = horizon
        self.encoder = CELLS[config.arch](
            input_size=N_FEATURES,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional,
            batch_first=True,
        )
        directions = 2 if config.bidirectional else 1
        self.head = QuantileHead(config.hidden_size * directions, horizon, config)

    def forward(
        self, x: torch.Tensor, target: torch.Tensor | None = None, teacher_forcing: float = 0.0
    ) -> torch.Tensor:
        # x: (B, T, F) -> (B, H, Q); target/teacher_forcing are accepted for a common signature
        check_input(x)
        out, _ = self.encoder(x)  # -> (B, T, D * directions)
        if self.config.bidirectional:
            d = self.config.hidden_size
            # forward direction's last step and backward direction's first step
            last = torch.cat([out[:, -1, :d], out[:, 0, d:]], dim=-1)  # -> (B, 2D)
        else:
            last = out[:, -1]  # -> (B, D)
        return self.head(last)


class Seq2SeqRNN(nn.Module):
    """Encoder-decoder: the decoder unrolls H steps, each fed the previous step's close.

    During training the fed value is the true previous target with probability
    ``teacher_forcing`` per step and batch, else the model's own median.
    """

    def __init__(self, config: ModelConfig, horizon: int) -> None:
        super().__init__()
        self.config = config
        self.horizon = horizon
        cell = CELLS[config.arch]
        dropout = config.dropout if config.num_layers > 1 else 0.0
        self.encoder = cell(N_FEATURES, config.hidden_size, config.num_layers, dropout=dropout, batch_first=True)
        self.decoder = cell(1, config.hidden_size, config.num_layers, dropout=dropout, batch_first=True)
        self.head = QuantileHead(config.hidden_size, 1, config)

    def forward(
        self, x: torch.Tensor, target: torch.Tensor | None = None, teacher_forcing: float = 0.0
    ) -> torch.Tensor:
        # x: (B, T, F), target: (B, H) scaled log ratios -> (B, H, Q)
        check_input(x)
        _, state = self.encoder(x)
        previous = torch.zeros(x.shape[0], 1, 1, dtype=x.dtype, device=x.device)  # last close = 0
        steps = []
        for h in range(self.horizon):
            out, state = self.decoder(previous, state)  # -> (B, 1, D)
            step = self.head(out[:, -1])  # -> (B, 1, Q)
            steps.append(step)
            fed = step[:, :, self.config.median_index : self.config.median_index + 1]  # -> (B, 1, 1)
            if target is not None and self.training and teacher_forcing > 0.0:
                use_truth = torch.rand(x.shape[0], 1, 1, device=x.device) < teacher_forcing
                fed = torch.where(use_truth, target[:, h].reshape(-1, 1, 1).to(fed.dtype), fed)
            previous = fed
        return torch.cat(steps, dim=1)  # -> (B, H, Q)


def check_input(x: torch.Tensor) -> None:
    if x.ndim != 3 or x.shape[-1] != N_FEATURES:
        raise ValueError(f"x: expected shape [B, T, {N_FEATURES}], got {list(x.shape)}")


def build_model(config: ModelConfig, horizon: int) -> nn.Module:
    """The network for a ModelConfig and H steps: DirectRNN for n-to-1, Seq2SeqRNN for seq2seq."""
    return DirectRNN(config, horizon) if config.mode == "n-to-1" else Seq2SeqRNN(config, horizon)


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, quantiles: tuple[float, ...]) -> torch.Tensor:
    """Mean quantile (pinball) loss of pred[B,H,Q] against target[B,H]."""
    q = torch.tensor(quantiles, dtype=pred.dtype, device=pred.device)  # -> (Q,)
    error = target.unsqueeze(-1) - pred  # -> (B, H, Q)
    return torch.maximum(q * error, (q - 1.0) * error).mean()
