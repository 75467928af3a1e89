"""`forecaster monitor`: the forecast ledger's commands (score served forecasts against the bars that
followed; report live skill per model version and step). Flags become calls of forecaster.monitor;
errors are one line (exit 2)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from forecaster.config import BAD_ROWS, SPLITS, check_choice
from forecaster.interface.console import console, friendly_errors, parse_list, setup_logging
from forecaster.monitor.store import LEDGER_URI_ENV

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
