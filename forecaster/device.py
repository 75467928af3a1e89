"""The one place where the compute device and its precision are decided (training and inference)."""

from contextlib import AbstractContextManager, nullcontext

import torch


def resolve_device(requested: str = "auto") -> torch.device:
    """Map ``auto|cpu|cuda[:N]`` to a torch device; ``auto`` takes CUDA when one is visible."""
    choice = requested.strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device: '{requested}' was requested but no CUDA device is visible")
        return torch.device(choice)
    raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got '{requested}'")


def autocast(device: torch.device) -> AbstractContextManager[object]:
    """bf16 mixed precision on CUDA; full precision on CPU (bit-reproducible there)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()
