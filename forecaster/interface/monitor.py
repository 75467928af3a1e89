"""`forecaster monitor`: the forecast ledger's commands (score served forecasts against the bars that
followed; report live skill per model version and step). Flags become calls of forecaster.monitor;
errors are one line (exit 2)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from forecaster.config import BAD_ROWS, SPLITS, check_choice
from forecaster.interface.console import console, friendly_errors, parse_list, setup_logging
from forecaster.monitor import LEDGER_URI_ENV

monitor_app = typer.Typer(
    no_args_is_help=True,
    help="The forecast ledger: every served forecast, scored against what happened, beside the baselines.",
)
LEDGER_HELP = "Ledger database URI (SQLite or PostgreSQL); default ledger.db beside the MLflow store"
TRACKING_HELP = "MLflow tracking URI: the default ledger sits beside its SQLite store"


@monitor_app.command()
@friendly_errors
def score(
    data: Annotated[str | None, typer.Option(help="CSV/Parquet file or folder of the realised bars")] = None,
    source: Annotated[str, typer.Option(help="file | yfinance (file when --data is given)")] = "file",
    tickers: Annotated[str | None, typer.Option(help="Comma-separated tickers (required for yfinance)")] = None,
    ledger_uri: Annotated[str | None, typer.Option(envvar=LEDGER_URI_ENV, help=LEDGER_HELP)] = None,
    tracking_uri: Annotated[str | None, typer.Option(help=TRACKING_HELP)] = None,
    bad_rows: Annotated[str, typer.Option(help="Bad rows: fail or drop (left out with a warning)")] = "fail",
    splits: Annotated[str, typer.Option(help="Jumps that look like unadjusted splits: warn, fail or adjust")] = "warn",
    date_format: Annotated[str | None, typer.Option(help="Layout of the file's dates when not ISO")] = None,
    cache_dir: Annotated[str | None, typer.Option(help="yfinance cache folder")] = ".forecaster/cache",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Score every ledgered forecast step whose target date has a bar: the realised close and the naive,
    drift and EWMA baselines from the same bars. Scoring again adds only what is newly due."""
    from pathlib import Path

    from forecaster.data.sources import load_source
    from forecaster.monitor.score import score as score_ledger
    from forecaster.monitor.store import LedgerStore, resolve_uri

    setup_logging(verbose)
    check_choice("--bad-rows", bad_rows, BAD_ROWS)
    check_choice("--splits", splits, SPLITS)
    if source == "sample":
        raise ValueError("--source: the bundled sample ended long before any forecast was served; give --data FILE")
    store = LedgerStore(resolve_uri(ledger_uri, tracking_uri))
    store.ensure_schema()  # an unreachable ledger is named before any bar is read or fetched
    frame, origin = load_source(
        source,
        data,
        parse_list(tickers),
        cache_dir=Path(cache_dir) if cache_dir else None,
        bad_rows=bad_rows,
        date_format=date_format,
        splits=splits,
    )
    try:
        summary = score_ledger(store, frame, origin)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({**summary.__dict__, "last_bar": summary.last_bar.isoformat(), "ledger": store.name}))
        return
    console.print(
        f"ledger {store.name}: {summary.scored} forecast steps scored against {origin} (bars to "
        f"{summary.last_bar:%Y-%m-%d}); {summary.resolved} resolved, {summary.pending} pending"
        + (f", {summary.unmatched} due but not in these bars (unmatched)" if summary.unmatched else ""),
        soft_wrap=True,
        markup=False,
    )


@monitor_app.command()
@friendly_errors
def report(
    model: Annotated[
        str | None, typer.Option(help="Only this registered model (default: every model ledgered)")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only forecasts made from bars of DATE (YYYY-MM-DD) on")] = None,
    ledger_uri: Annotated[str | None, typer.Option(envvar=LEDGER_URI_ENV, help=LEDGER_HELP)] = None,
    tracking_uri: Annotated[str | None, typer.Option(help=TRACKING_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (strict: no NaN)")] = False,
) -> None:
    """Live skill per model version and step: forecasts served and resolved, MAE beside naive, the
    live coverage of each central band, SPL beside the EWMA baseline, Diebold-Mariano p-values."""
    from forecaster.data.validate import parse_day
    from forecaster.monitor.report import live_report
    from forecaster.monitor.store import LedgerStore, resolve_uri

    setup_logging()
    first = parse_day(since, "--since").date() if since is not None else None
    store = LedgerStore(resolve_uri(ledger_uri, tracking_uri))
    try:
        payload = live_report(store, model, first)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(payload, allow_nan=False))
        return
    if not payload["groups"]:
        console.print(
            f"ledger {payload['ledger']}: no forecasts" + (f" of model {model}" if model else ""),
            markup=False,
            soft_wrap=True,
        )
        return
    console.print(live_table(payload))


def live_table(payload: dict[str, Any]) -> Table:
    """One row per model version, role and step; a coverage column per nominal band in the ledger."""
    bands = sorted({band for g in payload["groups"] for band in g["coverage"]}, key=float, reverse=True)
    roles = {g["role"] for g in payload["groups"]} != {"served"}
    table = Table(
        title=f"Live skill, ledger {payload['ledger']}" + (f", from {payload['since']}" if payload["since"] else "")
    )
    columns = ["model", "version", *(["role"] if roles else []), "step", "served", "resolved", "MAE/naive"]
    columns += [f"cov {band}%" for band in bands] + ["SPL/EWMA", "DM p naive", "DM p EWMA"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "version", "role") else "right")
    for g in payload["groups"]:
        coverage = [_percent(g["coverage"].get(band)) if band in g["coverage"] else "" for band in bands]
        tests = [_figure(g[name]["p_value"], ".3g") if g[name] else "n/a" for name in ("dm_vs_naive", "dm_vs_ewma")]
        table.add_row(
            g["model"],
            g["version"],
            *([g["role"]] if roles else []),
            str(g["step"]),
            str(g["served"]),
            str(g["resolved"]),
            _figure(g["mae_ratio_naive"], ".3f"),
            *coverage,
            _figure(g["spl_ratio_ewma"], ".3f"),
            *tests,
        )
    return table


def _figure(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
