"""What the network is fed in training: windows named by their origins, scaled once, and the
batches that gather them on the host or on the device."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from forecaster.scaling import WindowTransform
from forecaster.windows import Panel

FEATURE_CHUNK = 16_384


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x[B,T,F], s[B,S], y[B,H]
Index = np.ndarray | torch.Tensor  # positions of windows in a set: host numbers, or a tensor on the device


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

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to the other training processes) without the cached features: each process
        computes its own, faster than sending them through a pipe."""
        return {k: v for k, v in self.__dict__.items() if k != "_scaled"}

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The cached x[N,T,F], s[N,S], y[N,H] of every window, in set order."""
        x, s, y, _ = self._scaled
        return x, s, y

    @property
    def sigma(self) -> np.ndarray:
        """Each window's volatility at its origin (what turns z back into returns)."""
        return self._scaled[3]

    def tensors(self, idx: np.ndarray, device: torch.device) -> Batch:
        """The batch of the windows at positions idx, on `device`."""
        x, s, y = (a[idx] for a in self.arrays)
        return torch.from_numpy(x).to(device), torch.from_numpy(s).to(device), torch.from_numpy(y).to(device)


class Batches:
    """Batches of a WindowSet for one device.

    Host path: each batch is gathered from the host arrays and copied to the device. Resident
    path: the arrays are copied to the device once, an epoch's positions once, and a batch is a
    gather there (no per-step host work or transfer: what keeps a GPU busy). On the CPU both give
    the same tensors, so the same losses."""

    def __init__(self, windows: WindowSet, device: torch.device, resident: bool) -> None:
        self.windows, self.device = windows, device
        self.resident = tuple(torch.from_numpy(a).to(device) for a in windows.arrays) if resident else None

    def __len__(self) -> int:
        return len(self.windows)

    def index(self, positions: np.ndarray) -> Index:
        """Positions in the form `batch` takes: a tensor on the device for the resident path."""
        positions = np.ascontiguousarray(positions)
        return positions if self.resident is None else torch.from_numpy(positions).to(self.device)

    def batch(self, idx: Index) -> Batch:
        if self.resident is None:
            assert isinstance(idx, np.ndarray)
            return self.windows.tensors(idx, self.device)
        x, s, y = (a[idx] for a in self.resident)
        return x, s, y


def keeps_on_device(data_on: str, device: torch.device) -> bool:
    """`train.data_on`: auto keeps the windows on the device for CUDA only (on the CPU both paths
    gather the same rows from the same memory)."""
    return device.type == "cuda" if data_on == "auto" else data_on == "device"
