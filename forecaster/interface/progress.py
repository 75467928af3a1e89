"""A rich progress bar per epoch, fed by the training hooks."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from forecaster.model.fit import EpochStats, FitHooks


class EpochProgress:
    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
        )
        self.task: Any = None

    def __enter__(self) -> EpochProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def hooks(self) -> FitHooks:
        return FitHooks(on_epoch_start=self._start, on_batch=self._batch, on_epoch_end=self._end)

    def _start(self, epoch: int, n_batches: int) -> None:
        self.task = self.progress.add_task(f"epoch {epoch:>3}", total=n_batches, status="")

    def _batch(self, loss: float) -> None:
        self.progress.update(self.task, advance=1, status=f"loss {loss:.4f}")

    def _end(self, stats: EpochStats) -> None:
        self.progress.update(
            self.task,
            status=f"train {stats.train_loss:.4f}  val {stats.val_loss:.4f}  {stats.windows_per_s:,.0f} win/s",
        )
