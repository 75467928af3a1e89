"""The `forecaster` command line: train, evaluate, predict (and serve / retrain, added by their packages).

Entry point only: parses flags into the typed configuration, sets up logging, maps library
errors to one clear line and exit code 2, and presents progress and tables with rich. Every
command names the model ``--model`` (`options`); `train` lives in `train_command`.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer

from forecaster import __version__
from forecaster.config import BAD_ROWS, SPLITS, check_choice
from forecaster.data.calendar import DEFAULT_EXCHANGE
from forecaster.interface.console import console, friendly_errors, parse_list, setup_logging
from forecaster.interface.monitor import monitor_app
from forecaster.interface.options import (
    DATA,
    DEFAULT_CACHE_DIR,
    OUTPUT,
    RUN,
    BadRowsOption,
    CacheDirOption,
    ColumnsOption,
    DataOption,
    DateFormatOption,
    DeviceOption,
    ExchangeOption,
    ModelOption,
    OldModelOption,
    SourceOption,
    SplitsOption,
    TickersOption,
    TrackingOption,
    VerboseOption,
    one_model,
)
from forecaster.interface.tables import finite_or_null, metrics_table, significance_lines
from forecaster.interface.train_command import train

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Global LSTM/GRU stock forecaster.")
app.add_typer(monitor_app, name="monitor")  # the forecast ledger's commands (forecaster/interface/monitor.py)
log = logging.getLogger("forecaster")
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(train)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"forecaster {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit"),
    ] = None,
) -> None:
    """Global LSTM/GRU stock forecaster."""


@app.command()
@friendly_errors
def evaluate(
    model: ModelOption = None,
    model_uri: OldModelOption = None,
    data: DataOption = None,
    source: SourceOption = "sample",
    tickers: TickersOption = None,
    start: Annotated[str | None, typer.Option(help="First date of data to load", rich_help_panel=DATA)] = None,
    bad_rows: BadRowsOption = "fail",
    splits: SplitsOption = "warn",
    date_format: DateFormatOption = None,
    columns: ColumnsOption = None,
    from_date: Annotated[
        str | None, typer.Option("--from", help="Only forecast origins on or after DATE", rich_help_panel=OUTPUT)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object", rich_help_panel=OUTPUT)] = False,
    backtest_out: Annotated[
        str | None,
        typer.Option("--backtest-out", help="Write every forecast to a .parquet or .csv FILE", rich_help_panel=OUTPUT),
    ] = None,
    device: DeviceOption = "auto",
    tracking_uri: TrackingOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Score a model on any data, beside the baselines.

    Rolling origin (stride 1, every origin) beside the naive, drift, EWMA and GARCH baselines.

    Diebold-Mariano tests per step say where the model is significantly better or worse."""
    from forecaster.api import evaluation_report
    from forecaster.data.columns import parse_columns
    from forecaster.data.sources import load_source
    from forecaster.data.validate import parse_day, require_rows
    from forecaster.evaluation.backtest_file import check_backtest_path
    from forecaster.registry import tracking

    setup_logging(verbose)
    # every flag is checked before any data or model is loaded: a typo should not cost a whole backtest
    reference = one_model(model, model_uri)
    check_choice("--bad-rows", bad_rows, BAD_ROWS)
    check_choice("--splits", splits, SPLITS)
    cut = parse_day(from_date, "--from") if from_date is not None else None
    if backtest_out is not None:
        try:
            check_backtest_path(backtest_out, reads=data)
        except ValueError as exc:
            raise ValueError(f"--backtest-out: {exc}") from None
    mapping = parse_columns(columns)
    frame, origin = load_source(
        source,
        data,
        parse_list(tickers),
        start,
        None,
        None,
        bad_rows,
        date_format=date_format,
        splits=splits,
        columns=mapping,
    )

    tracking.configure(tracking_uri)
    forecaster, loaded = tracking.load_forecaster(reference, device=device)
    # a ticker too short for one origin is an error (or, with --bad-rows drop, left out with a warning)
    frame = require_rows(frame, forecaster.min_rows, bad_rows)
    payload = evaluation_report(  # the report's one owner, also behind forecaster.evaluate()
        frame, forecaster, cut, source=loaded, data=origin, backtest_out=backtest_out
    )
    if as_json:
        typer.echo(json.dumps(finite_or_null(payload), allow_nan=False))  # strict JSON: no NaN / Infinity
        return
    version = f" (version {loaded.version})" if loaded.version is not None else ""
    title = f"{reference}{version} on {origin}: {payload['n_series']} series, {payload['n_origins']} origins"
    console.print(metrics_table(payload["metrics"], title))
    for line in significance_lines(payload["significance"]):
        console.print(line, soft_wrap=True, markup=False)


@app.command()
@friendly_errors
def predict(
    model: ModelOption = None,
    model_uri: OldModelOption = None,
    out: Annotated[
        str | None, typer.Option(help="\\[required] .parquet or .csv file (written atomically)", rich_help_panel=OUTPUT)
    ] = None,
    data: DataOption = None,
    source: SourceOption = "sample",
    tickers: TickersOption = None,
    bad_rows: BadRowsOption = "fail",
    splits: SplitsOption = "warn",
    date_format: DateFormatOption = None,
    columns: ColumnsOption = None,
    cache_dir: CacheDirOption = DEFAULT_CACHE_DIR,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Forecast from each ticker's last bar on or before DATE (default: its last)", rich_help_panel=OUTPUT
        ),
    ] = None,
    allow_stale: Annotated[
        bool,
        typer.Option(
            "--allow-stale",
            help="Accept an --as-of past the data's last bar: forecast from it, with stale_days in the file",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    exchange: ExchangeOption = DEFAULT_EXCHANGE,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Fail when a ticker has too little history (default: skip, warn)", rich_help_panel=DATA
        ),
    ] = False,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Windows per forward pass (default: 8192)", rich_help_panel=RUN)
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Batches in flight (default: one per CPU core; 1 on CUDA)", rich_help_panel=RUN),
    ] = None,
    device: DeviceOption = "auto",
    tracking_uri: TrackingOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Forecast every ticker of a file into a table.

    One forecast per ticker, from its last lookback bars up to --as-of, written to --out.

    Every quantile of each step, dated by the exchange's next trading sessions."""
    import importlib
    import threading
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # torch and the network (about half of a command's time) load in the background while the
    # data is read and checked; the model is loaded only after both
    network = threading.Thread(target=importlib.import_module, args=("forecaster.model.predictor",), daemon=True)
    network.start()

    from forecaster.data.calendar import check_exchange
    from forecaster.data.columns import parse_columns
    from forecaster.data.sources import load_source
    from forecaster.data.validate import parse_day
    from forecaster.model.batch import (
        BATCH_SIZE,
        check_as_of,
        check_forecasts_path,
        default_workers,
        forecast_panel,
        write_forecasts,
    )
    from forecaster.registry import tracking

    setup_logging(verbose)
    reference = one_model(model, model_uri)  # every flag before any data or model is loaded
    if out is None:
        raise ValueError("--out: missing; expected the forecasts file to write, e.g. --out forecasts.parquet")
    check_choice("--bad-rows", bad_rows, BAD_ROWS)
    check_choice("--splits", splits, SPLITS)
    try:
        check_forecasts_path(out, reads=data)
    except ValueError as exc:
        raise ValueError(f"--out: {exc}") from None
    check_exchange(exchange)
    cut = parse_day(as_of, "--as-of") if as_of is not None else None  # once, before any data or model is read
    mapping = parse_columns(columns)
    frame, origin = load_source(
        source,
        data,
        parse_list(tickers),
        None,
        None,
        Path(cache_dir) if cache_dir else None,
        bad_rows,
        date_format=date_format,
        splits=splits,
        columns=mapping,
    )
    if not allow_stale and len(frame):
        check_as_of(frame["date"].to_numpy(), cut, exchange)  # refused before the model is loaded
    network.join()
    import torch

    tracking.configure(tracking_uri)
    forecaster, loaded = tracking.load_forecaster(reference, device=device)
    if workers is None:
        workers = default_workers(forecaster.device)
    if forecaster.device.type == "cpu" and workers > 1:
        torch.set_num_threads(1)  # the workers use the cores; see batch.default_workers
    bar_columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*bar_columns, console=console) as bar:
        task = bar.add_task("forecasting", total=None)
        result = forecast_panel(
            forecaster,
            frame,
            cut,
            exchange,
            batch_size or BATCH_SIZE,
            workers,
            strict,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            allow_stale=allow_stale,
        )
    written = write_forecasts(result.table, out)
    log.info(
        "%d forecasts of %d tickers by %s on %s written to %s",
        len(result.table),
        result.table["ticker"].nunique(),
        loaded.label,
        origin,
        written,
    )


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())


def _register_plugins() -> None:
    """Commands of the service and pipelines packages, found through entry points so that
    forecaster never imports them."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="forecaster.commands"):
        try:
            entry.load()(app)
        except ModuleNotFoundError:
            log.debug("command plugin %s is not installed", entry.name)


_register_plugins()
