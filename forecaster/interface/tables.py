"""What the commands print besides one-line errors: the metrics table and the significance lines
of a report, and the report made strict JSON (no NaN)."""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.table import Table


def finite_or_null(value: Any) -> Any:
    """The report with every NaN or infinite number (a metric no series could be scored on) as None."""
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def metrics_table(metrics: dict[str, dict[str, list[float]]], title: str) -> Table:
    """Rows: each metric averaged over steps, in the evaluation's order; columns: the model and the
    baselines (a column per forecast keeps the table within a terminal's width).

    The per-level pinball losses stay in the JSON: spl sums them up.
    """
    names = [m for m in dict.fromkeys(m for block in metrics.values() for m in block) if not m.startswith("pinball_")]
    table = Table(title=title)
    table.add_column("metric")
    for forecast in metrics:
        table.add_column(forecast.replace("_uncalibrated", " (raw)"), justify="right")
    for metric in names:
        cells = [_mean_cell(block[metric]) if metric in block else "" for block in metrics.values()]
        table.add_row(metric, *cells)
    return table


def _mean_cell(values: list[float]) -> str:
    mean = float(np.mean(values))
    return f"{mean:.4f}" if np.isfinite(mean) else "n/a"


def significance_lines(tests: dict[str, dict[str, Any]]) -> list[str]:
    """One line per comparison: the Diebold-Mariano verdict (5%) and p-value of each step."""
    lines = []
    for key, block in tests.items():
        steps = ", ".join(
            f"h{h} {verdict}" + ("" if p is None else f" (p={p:.3g})")
            for h, (verdict, p) in enumerate(zip(block["verdict"], block["p_value"], strict=True), start=1)
        )
        lines.append(f"{key.replace('_vs_', ' vs ')} on {block['metric']} (Diebold-Mariano, 5%): {steps}")
    return lines
