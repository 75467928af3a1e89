"""Live skill from the ledger, per model version, role and step: forecasts served and resolved, MAE
beside naive and drift, the live coverage of every central band, SPL beside the EWMA baseline and
Diebold-Mariano tests, all by the evaluation's own functions (scoring, significance), so a live
figure means what the backtest's figure of the same name means.

Scaled figures (SPL, the tests) divide each forecast by its series' scale at its as-of date (stored
by scoring): prices divided by it are in scale units, and the evaluation's per-series mean of them
is M5's scaled pinball loss. Forecasts without a scale (a price that never moved) or without an
EWMA forecast (a series' first day) are left out of the figures that need one. A figure with no
forecast to stand on is None, so the report is strict JSON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import numpy as np
import sqlalchemy as sa

from forecaster.config import MEDIAN
from forecaster.evaluation.scoring import central_bands, pinball, point_metrics, quantile_metrics
from forecaster.evaluation.significance import DMResult, dm_test, panel_differential
from forecaster.monitor.schema import STEP_COLUMNS, Step, forecasts, outcomes, steps
from forecaster.monitor.store import LedgerStore

Figure = float | None


def number(value: float) -> Figure:
    """A figure as JSON allows it: None for NaN or infinity."""
    value = float(value)
    return value if np.isfinite(value) else None


def ratio(top: Figure, bottom: Figure) -> Figure:
    return None if top is None or not bottom else number(top / bottom)


def dm_figures(result: DMResult) -> dict[str, Any]:
    return {"stat": number(result.stat), "p_value": number(result.p_value), "verdict": result.verdict, "n": result.n}


def ledger_rows(store: LedgerStore, model: str | None = None, since: dt.date | None = None) -> list[Step]:
    """Every step of every ledger forecast of `model` (with its outcome, if any), from the as-of date
    `since` on, ordered by model, version, role, step and forecast."""
    f, o = forecasts.c, outcomes.c
    query = sa.select(*(forecasts.c[name] for name in STEP_COLUMNS))
    if model is not None:
        query = query.where(f.model == model)
    if since is not None:
        query = query.where(f.as_of >= since)
    chosen = query.subquery()
    done = sa.select(o.forecast_id, o.step, o.actual, o.naive, o.drift, o.ewma, o.scale).join_from(
        outcomes, chosen, chosen.c.id == o.forecast_id
    )
    store.ensure_schema()
    with store.connect("reading the ledger") as connection:
        found: dict[int, dict[int, Any]] = {}
        for row in connection.execute(done):
            found.setdefault(row.forecast_id, {})[row.step] = row
        rows = [s for row in connection.execute(query.order_by(f.id)) for s in steps(row, found.get(row.id))]
    return sorted(rows, key=lambda r: (r.model, r.version, r.role, r.step, r.id))


def group_figures(rows: list[Any]) -> dict[str, Any]:
    """The figures of one model version, role and step (`rows` share their levels)."""
    first = rows[0]
    levels = tuple(first.levels)
    done = [r for r in rows if r.actual is not None]
    figures: dict[str, Any] = {
        "model": first.model,
        "version": first.version,
        "role": first.role,
        "step": first.step,
        "levels": list(levels),
        "served": len(rows),
        "resolved": len(done),
        "pending": len(rows) - len(done),
        "first_as_of": min(r.as_of for r in rows).isoformat(),
        "last_as_of": max(r.as_of for r in rows).isoformat(),
        "mae": {"model": None, "naive": None, "drift": None},
        "mae_ratio_naive": None,
        "coverage": {f"{nominal:g}": None for _, _, nominal in central_bands(levels)},
        "spl": {"model": None, "ewma": None},
        "spl_ratio_ewma": None,
        "dm_vs_naive": None,
        "dm_vs_ewma": None,
    }
    if not done:
        return figures
    keys = [r.ticker or r.series_id for r in done]
    series = np.unique(keys, return_inverse=True)[1]
    ones = np.ones(series.max() + 1)  # unscaled figures: every series' scale is 1
    actual = np.array([r.actual for r in done])[:, None]  # -> (N, 1): one step
    quantiles = np.array([r.quantiles for r in done])[:, None, :]  # -> (N, 1, Q)
    last = np.array([r.last_close for r in done])
    point = {"model": quantiles[..., levels.index(MEDIAN)]}
    point |= {name: np.array([getattr(r, name) for r in done])[:, None] for name in ("naive", "drift")}
    mae = {name: number(point_metrics(pred, actual, last, series, ones)["mae"][0]) for name, pred in point.items()}
    figures["mae"], figures["mae_ratio_naive"] = mae, ratio(mae["model"], mae["naive"])
    live = quantile_metrics(quantiles, levels, actual, series, ones)
    figures["coverage"] = {name: number(live[f"coverage_{name}"][0]) for name in figures["coverage"]}

    scale = np.array([np.nan if r.scale is None else r.scale for r in done])
    dates = np.array([r.as_of for r in done], dtype="datetime64[D]")
    each = np.arange(len(done))  # a scale per forecast: panel_differential divides row by row
    errors = {name: np.abs(pred - actual)[:, 0] for name, pred in point.items()}
    figures["dm_vs_naive"] = dm_figures(
        dm_test(panel_differential(errors["model"], errors["naive"], each, dates, scale), horizon=first.step)
    )
    scored = np.flatnonzero(np.isfinite(scale) & np.array([r.ewma is not None for r in done]))
    if len(scored):
        units = scale[scored][:, None, None]
        ewma = np.array([done[i].ewma for i in scored])[:, None, :] / units
        model_q, truth = quantiles[scored] / units, actual[scored] / units[..., 0]
        spl = {
            name: number(quantile_metrics(q, levels, truth, series[scored], ones)["spl"][0])
            for name, q in (("model", model_q), ("ewma", ewma))
        }
        figures["spl"], figures["spl_ratio_ewma"] = spl, ratio(spl["model"], spl["ewma"])
        loss_model, loss_ewma = (pinball(truth, q, levels).mean(axis=2)[:, 0] for q in (model_q, ewma))
        ones_scored = np.ones(len(scored))  # already in scale units
        figures["dm_vs_ewma"] = dm_figures(
            dm_test(
                panel_differential(loss_model, loss_ewma, np.arange(len(scored)), dates[scored], ones_scored),
                horizon=first.step,
            )
        )
    return figures


def groups(rows: Iterable[Any]) -> list[list[Any]]:
    """Rows split by model, version, role, step and levels, in that order."""
    split: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        split.setdefault((row.model, row.version, row.role, row.step, tuple(row.levels)), []).append(row)
    return [split[key] for key in sorted(split, key=lambda k: (k[0], _version_order(k[1]), k[2], k[3], k[4]))]


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (2**63, version)


def live_report(store: LedgerStore, model: str | None = None, since: dt.date | None = None) -> dict[str, Any]:
    """The report as one JSON-ready object: the filters, and one entry per model version, role and step."""
    rows = ledger_rows(store, model, since)
    return {
        "ledger": store.name,
        "model": model,
        "since": since.isoformat() if since else None,
        "groups": [group_figures(group) for group in groups(rows)],
    }
