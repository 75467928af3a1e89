"""The `forecaster` command line: train, evaluate (and serve / retrain, added by their packages).

Entry point only: parses flags into the typed configuration, sets up logging, maps library
errors to one clear line and exit code 2, and presents progress and tables with rich.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from forecaster.config import BAD_ROWS, SPLITS, TrainingConfig, check_choice
from forecaster.data.calendar import DEFAULT_EXCHANGE
from forecaster.errors import redact
from forecaster.interface.console import console, friendly_errors, parse_list, setup_logging
from forecaster.interface.monitor import monitor_app
from forecaster.interface.overrides import resolve_training, settings_help, shortcut_help, to_yaml

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Global LSTM/GRU stock forecaster.")
app.add_typer(monitor_app, name="monitor")  # the forecast ledger's commands (forecaster/interface/monitor.py)
log = logging.getLogger("forecaster")
DATE_FORMAT_HELP = "Layout of the file's dates when not ISO YYYY-MM-DD, in strptime codes, e.g. %d/%m/%Y"
BAD_ROWS_HELP = f"Bad rows and too-short tickers: {' or '.join(BAD_ROWS)} (drop: left out with a warning)"
SPLITS_HELP = f"Jumps that look like unadjusted stock splits: {' or '.join(SPLITS)} (adjust: back-adjust, logged)"

TRAIN_EPILOG = "Every setting, as a dotted flag (the flags above are shortcuts for some of them):\n\n" + "\n\n".join(
    settings_help(TrainingConfig).splitlines()
)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, epilog=TRAIN_EPILOG)
@friendly_errors
def train(
    ctx: typer.Context,
    data: Annotated[
        str | None, typer.Option(help="CSV/Parquet file, long format date,ticker,open,high,low,close")
    ] = None,
    source: Annotated[str, typer.Option(help="sample | yfinance | file (file when --data is given)")] = "sample",
    tickers: Annotated[str | None, typer.Option(help="Comma-separated tickers (required for yfinance)")] = None,
    start: Annotated[str | None, typer.Option(help="First date YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="Last date YYYY-MM-DD")] = None,
    config_file: Annotated[
        str | None, typer.Option("--config", help="YAML training settings (as --print-config prints them)")
    ] = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the resolved training settings as YAML and exit")
    ] = False,
    arch: Annotated[str | None, typer.Option(help=shortcut_help("arch"))] = None,
    mode: Annotated[str | None, typer.Option(help=shortcut_help("mode"))] = None,
    lookback: Annotated[int | None, typer.Option(help=shortcut_help("lookback"))] = None,
    horizon: Annotated[int | None, typer.Option(help=shortcut_help("horizon"))] = None,
    epochs: Annotated[int | None, typer.Option(help=shortcut_help("epochs"))] = None,
    hidden: Annotated[int | None, typer.Option(help=shortcut_help("hidden"))] = None,
    layers: Annotated[int | None, typer.Option(help=shortcut_help("layers"))] = None,
    dropout: Annotated[float | None, typer.Option(help=shortcut_help("dropout"))] = None,
    bidirectional: Annotated[bool | None, typer.Option(help=shortcut_help("bidirectional"))] = None,
    quantiles: Annotated[str | None, typer.Option(help=shortcut_help("quantiles"))] = None,
    batch_size: Annotated[int | None, typer.Option(help=shortcut_help("batch_size"))] = None,
    lr: Annotated[float | None, typer.Option(help=shortcut_help("lr"))] = None,
    patience: Annotated[int | None, typer.Option(help=shortcut_help("patience"))] = None,
    teacher_forcing: Annotated[float | None, typer.Option(help=shortcut_help("teacher_forcing"))] = None,
    seed: Annotated[int | None, typer.Option(help=shortcut_help("seed"))] = None,
    device: Annotated[str | None, typer.Option(help=shortcut_help("device"))] = None,
    nproc_per_node: Annotated[int | None, typer.Option(help=shortcut_help("nproc_per_node"))] = None,
    nnodes: Annotated[
        int, typer.Option(help="Machines of the run: > 1 re-launches this command under torchrun (run it on each)")
    ] = 1,
    rdzv_endpoint: Annotated[
        str | None, typer.Option(help="HOST:PORT of the torchrun rendezvous on one of the machines (with --nnodes)")
    ] = None,
    val_fraction: Annotated[float | None, typer.Option(help=shortcut_help("val_fraction"))] = None,
    test_fraction: Annotated[float | None, typer.Option(help=shortcut_help("test_fraction"))] = None,
    bad_rows: Annotated[str | None, typer.Option(help=shortcut_help("bad_rows"))] = None,
    register_as: Annotated[str | None, typer.Option(help="Registered model name")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias to set on the new version, e.g. champion")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: env or local SQLite)")] = None,
    cache_dir: Annotated[str | None, typer.Option(help="yfinance cache folder")] = ".forecaster/cache",
    date_format: Annotated[str | None, typer.Option(help=DATE_FORMAT_HELP)] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Train a global model over all tickers, track it in MLflow and optionally register it.

    Any setting can also be given by its dotted name, e.g. --train.lr 1e-3 --model.hidden-size 128
    (see the list below); precedence: flags > --config file > defaults."""
    from pathlib import Path

    from forecaster.data.sources import load_source
    from forecaster.model import distributed
    from forecaster.registry import tracking
    from forecaster.run.steps import train_other_rank
    from forecaster.run.tracked import check_registration, tracked_training

    shortcuts = {
        name: value
        for name, value in {
            "arch": arch,
            "mode": mode,
            "lookback": lookback,
            "horizon": horizon,
            "epochs": epochs,
            "hidden": hidden,
            "layers": layers,
            "dropout": dropout,
            "bidirectional": bidirectional,
            "quantiles": quantiles,
            "batch_size": batch_size,
            "lr": lr,
            "patience": patience,
            "teacher_forcing": teacher_forcing,
            "seed": seed,
            "device": device,
            "nproc_per_node": nproc_per_node,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "bad_rows": bad_rows,
        }.items()
        if value is not None
    }
    config = resolve_training(config_file, list(ctx.args), shortcuts)
    if print_config:
        typer.echo(to_yaml(config.model_dump(mode="json")), nl=False)
        return
    setup_logging(verbose)
    check_registration(register_as, alias)  # before any data is read, or any process is started
    distributed.check_launch(nnodes, rdzv_endpoint)
    if (nnodes > 1 or rdzv_endpoint) and not distributed.launched():
        import subprocess

        command = distributed.torchrun_command(sys.argv[1:], nnodes, config.train.nproc_per_node, rdzv_endpoint)
        log.info("re-launching under torchrun: %s", " ".join(command))
        raise typer.Exit(subprocess.call(command))
    group = distributed.setup_for(config.train)  # joins the process group when torchrun started this process
    frame, origin = group.from_main(  # loaded once, by rank 0: every rank trains on the same bars
        lambda: load_source(
            source,
            data,
            parse_list(tickers),
            start,
            end,
            Path(cache_dir) if cache_dir else None,
            config.data.bad_rows,
            date_format=date_format,
            splits=config.data.splits,
        )
    )
    if not group.is_main:
        train_other_rank(frame, config.data, config.model, config.train)
        return
    uri = tracking.configure(tracking_uri)
    log.info("tracking store: %s", redact(uri))
    log.debug("config: %s", json.dumps(config.model_dump(mode="json")))
    from forecaster.interface.progress import EpochProgress

    with EpochProgress(console) as progress:
        result = tracked_training(
            frame,
            origin,
            config.data,
            config.model,
            config.train,
            register_as=register_as,
            alias=alias,
            hooks=progress.hooks(),
        )
    if result.metrics:
        console.print(metrics_table(result.metrics, "Test split: model vs baselines (mean over steps 1..H)"))
    fit = result.outcome.fit
    console.print(
        f"best epoch {fit.best_epoch} of {len(fit.history)} (val loss {fit.best_val_loss:.4f}), device {fit.device}"
    )
    console.print(f"run id: [bold]{result.run_id}[/]")
    if result.version:
        where = f"models:/{register_as}@{alias}" if alias else f"models:/{register_as}/{result.version}"
        console.print(f"registered: [bold]{register_as}[/] version [bold]{result.version}[/] ({where})")
    typer.echo(json.dumps({"run_id": result.run_id, "version": result.version, "model_uri": result.model_uri}))


@app.command()
@friendly_errors
def evaluate(
    model_uri: Annotated[str, typer.Option(help="models:/NAME@ALIAS or models:/NAME/VERSION")],
    data: Annotated[str | None, typer.Option(help="CSV/Parquet file (default: the bundled sample)")] = None,
    source: Annotated[str, typer.Option(help="sample | yfinance | file")] = "sample",
    tickers: Annotated[str | None, typer.Option()] = None,
    start: Annotated[str | None, typer.Option(help="First date of data to load")] = None,
    from_date: Annotated[
        str | None, typer.Option("--from", help="Only forecast origins on or after DATE (YYYY-MM-DD)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    device: Annotated[str, typer.Option()] = "auto",
    bad_rows: Annotated[str, typer.Option(help=BAD_ROWS_HELP)] = "fail",
    splits: Annotated[str, typer.Option(help=SPLITS_HELP)] = "warn",
    date_format: Annotated[str | None, typer.Option(help=DATE_FORMAT_HELP)] = None,
    tracking_uri: Annotated[str | None, typer.Option()] = None,
    backtest_out: Annotated[
        str | None,
        typer.Option("--backtest-out", help="Write every forecast, ticker x origin x step, to a .parquet or .csv FILE"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Rolling-origin evaluation (stride 1, every origin) of a registered model on any data, beside the
    naive, drift, EWMA-volatility and GARCH baselines, with Diebold-Mariano tests per step."""
    from forecaster.api import evaluation_report
    from forecaster.data.sources import load_source
    from forecaster.data.validate import parse_day, require_rows
    from forecaster.evaluation.backtest_file import check_backtest_path
    from forecaster.registry import tracking

    setup_logging(verbose)
    # every flag is checked before any data or model is loaded: a typo should not cost a whole backtest
    check_choice("--bad-rows", bad_rows, BAD_ROWS)
    check_choice("--splits", splits, SPLITS)
    cut = parse_day(from_date, "--from") if from_date is not None else None
    if backtest_out is not None:
        try:
            check_backtest_path(backtest_out, reads=data)
        except ValueError as exc:
            raise ValueError(f"--backtest-out: {exc}") from None
    frame, origin = load_source(
        source, data, parse_list(tickers), start, None, None, bad_rows, date_format=date_format, splits=splits
    )
    tracking.configure(tracking_uri)
    forecaster, ref = tracking.load_forecaster(model_uri, device=device)
    # a ticker too short for one origin is an error (or, with --bad-rows drop, left out with a warning)
    frame = require_rows(frame, forecaster.lookback + forecaster.horizon, bad_rows)
    payload = evaluation_report(  # the report's one owner, also behind forecaster.evaluate()
        frame, forecaster, cut, model_uri=model_uri, ref=ref, data=origin, backtest_out=backtest_out
    )
    if as_json:
        typer.echo(json.dumps(finite_or_null(payload), allow_nan=False))  # strict JSON: no NaN / Infinity
        return
    console.print(
        metrics_table(
            payload["metrics"],
            f"{model_uri} (version {ref.version}) on {origin}: "
            f"{payload['n_series']} series, {payload['n_origins']} origins",
        )
    )
    for line in significance_lines(payload["significance"]):
        console.print(line, soft_wrap=True, markup=False)


@app.command()
@friendly_errors
def predict(
    model_uri: Annotated[str, typer.Option(help="models:/NAME@ALIAS or models:/NAME/VERSION")],
    out: Annotated[str, typer.Option(help="Forecasts file to write: .parquet or .csv (written atomically)")],
    data: Annotated[str | None, typer.Option(help="CSV/Parquet file or folder (default: the bundled sample)")] = None,
    source: Annotated[str, typer.Option(help="sample | yfinance | file")] = "sample",
    tickers: Annotated[str | None, typer.Option(help="Comma-separated tickers (default: every one)")] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Forecast from each ticker's last bar on or before DATE (default: its last)")
    ] = None,
    exchange: Annotated[str, typer.Option(help="Exchange calendar of the forecast dates")] = DEFAULT_EXCHANGE,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Windows per forward pass (default: 8192)")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Batches in flight (default: one per CPU core; 1 on CUDA)")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail when a ticker has too little history (default: skip, warn)")
    ] = False,
    device: Annotated[str, typer.Option()] = "auto",
    bad_rows: Annotated[str, typer.Option(help="Bad rows: fail or drop (left out with a warning)")] = "fail",
    splits: Annotated[str, typer.Option(help=SPLITS_HELP)] = "warn",
    date_format: Annotated[str | None, typer.Option(help=DATE_FORMAT_HELP)] = None,
    tracking_uri: Annotated[str | None, typer.Option()] = None,
    cache_dir: Annotated[str | None, typer.Option(help="yfinance cache folder")] = ".forecaster/cache",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Batch scoring: one forecast per ticker of a file (every quantile, dated by the exchange's
    next trading sessions), from its last lookback bars up to --as-of, written to --out."""
    from pathlib import Path

    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from forecaster.data.calendar import check_exchange
    from forecaster.data.sources import load_source
    from forecaster.data.validate import parse_day
    from forecaster.model.batch import (
        BATCH_SIZE,
        check_forecasts_path,
        default_workers,
        forecast_panel,
        write_forecasts,
    )
    from forecaster.registry import tracking

    setup_logging(verbose)
    check_choice("--bad-rows", bad_rows, BAD_ROWS)  # every flag before any data or model is loaded
    check_choice("--splits", splits, SPLITS)
    try:
        check_forecasts_path(out, reads=data)
    except ValueError as exc:
        raise ValueError(f"--out: {exc}") from None
    check_exchange(exchange)
    cut = parse_day(as_of, "--as-of") if as_of is not None else None  # once, before any data or model is read
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
    )
    tracking.configure(tracking_uri)
    forecaster, ref = tracking.load_forecaster(model_uri, device=device)
    if workers is None:
        workers = default_workers(forecaster.device)
    if forecaster.device.type == "cpu" and workers > 1:
        torch.set_num_threads(1)  # the workers use the cores; see batch.default_workers
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
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
        )
    written = write_forecasts(result.table, out)
    log.info(
        "%d forecasts of %d tickers by %s (version %s) on %s written to %s",
        len(result.table),
        result.table["ticker"].nunique(),
        model_uri,
        ref.version,
        origin,
        written,
    )


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
