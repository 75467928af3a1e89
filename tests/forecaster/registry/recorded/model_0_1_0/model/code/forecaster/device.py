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


def use_cpu_threads(threads: int, device: torch.device) -> None:
    """Intra-op threads for CPU work (0 keeps torch's default). Measured on 2 shared cores: one
    thread trained the default model 5.5x faster than two (benchmarks/RESULTS.md section 9)."""
    if device.type == "cpu" and threads > 0:
        torch.set_num_threads(threads)
