"""The `forecaster` command line: train, evaluate (and serve / retrain, added by their packages).

Entry point only: parses flags into typed configs, sets up logging, maps library errors
to one clear line and exit code 2, and presents progress and tables with rich.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from forecaster.errors import ForecasterError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Global LSTM/GRU stock forecaster.")
console = Console(stderr=True)
log = logging.getLogger("forecaster")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )
    logging.getLogger("forecaster").setLevel(logging.INFO)
    for noisy in ("mlflow", "alembic", "urllib3", "yfinance"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow's schema and dataset-source hints are about inputs we build on purpose
    warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")
    warnings.filterwarnings("ignore", module="yfinance")  # its pandas deprecation notices are not ours


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Library errors become one red line naming the problem and exit code 2, not a trace."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ForecasterError, ValueError) as exc:
            # one line whatever the terminal width; the message is text, never rich markup
            console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


def parse_list(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


@app.command()
@friendly_errors
def train(
    data: Annotated[
        str | None, typer.Option(help="CSV/Parquet file, long format date,ticker,open,high,low,close")
    ] = None,
    source: Annotated[str, typer.Option(help="sample | yfinance | file (file when --data is given)")] = "sample",
    tickers: Annotated[str | None, typer.Option(help="Comma-separated tickers (required for yfinance)")] = None,
    start: Annotated[str | None, typer.Option(help="First date YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="Last date YYYY-MM-DD")] = None,
    arch: Annotated[str, typer.Option(help="lstm | gru | rnn")] = "lstm",
    mode: Annotated[str, typer.Option(help="n-to-1 | seq2seq")] = "n-to-1",
    lookback: Annotated[int, typer.Option(help="T: input days per window")] = 60,
    horizon: Annotated[int, typer.Option(help="H: days ahead to forecast")] = 5,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping may end sooner)")] = 30,
    hidden: Annotated[int, typer.Option(help="Hidden size")] = 64,
    layers: Annotated[int, typer.Option(help="RNN layers")] = 2,
    dropout: Annotated[float, typer.Option()] = 0.1,
    bidirectional: Annotated[bool, typer.Option(help="Bidirectional encoder (n-to-1 only)")] = False,
    quantiles: Annotated[str, typer.Option(help="Comma-separated quantiles, must include 0.5")] = "0.1,0.5,0.9",
    batch_size: Annotated[int, typer.Option()] = 256,
    lr: Annotated[float, typer.Option()] = 2e-3,
    patience: Annotated[int, typer.Option(help="Early-stopping patience in epochs")] = 5,
    teacher_forcing: Annotated[float, typer.Option(help="seq2seq teacher-forcing ratio")] = 0.5,
    seed: Annotated[int, typer.Option()] = 42,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    val_fraction: Annotated[float, typer.Option(help="Share of dates for validation")] = 0.15,
    test_fraction: Annotated[float, typer.Option(help="Share of dates for the test split")] = 0.15,
    bad_rows: Annotated[str, typer.Option(help="fail | drop (drop warns with a count)")] = "fail",
    register_as: Annotated[str | None, typer.Option(help="Registered model name")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias to set on the new version, e.g. champion")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: env or local SQLite)")] = None,
    cache_dir: Annotated[str | None, typer.Option(help="yfinance cache folder")] = ".forecaster/cache",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Train a global model over all tickers, track it in MLflow and optionally register it."""
    from pathlib import Path

    from forecaster import tracking
    from forecaster.config import build_configs, to_dict
    from forecaster.runs import tracked_training
    from forecaster.sources import load_source

    setup_logging(verbose)
    if alias and not register_as:
        raise ValueError("alias: --alias needs --register-as NAME")
    data_config, model_config, train_config = build_configs(
        lookback=lookback,
        horizon=horizon,
        arch=arch,
        mode=mode,
        hidden=hidden,
        layers=layers,
        dropout=dropout,
        bidirectional=bidirectional,
        quantiles=tuple(float(q) for q in parse_list(quantiles) or []),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        bad_rows=bad_rows,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        seed=seed,
        device=device,
        teacher_forcing=teacher_forcing,
    )
    frame, origin = load_source(
        source, data, parse_list(tickers), start, end, Path(cache_dir) if cache_dir else None, bad_rows
    )
    uri = tracking.configure(tracking_uri)
    log.info("tracking store: %s", tracking.redact(uri))
    log.debug(
        "config: %s",
        json.dumps({"data": to_dict(data_config), "model": to_dict(model_config), "train": to_dict(train_config)}),
    )
    from forecaster.progress import EpochProgress

    with EpochProgress(console) as progress:
        result = tracked_training(
            frame,
            origin,
            data_config,
            model_config,
            train_config,
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
    from_date: Annotated[str | None, typer.Option("--from", help="Only forecast origins on or after DATE")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    device: Annotated[str, typer.Option()] = "auto",
    bad_rows: Annotated[str, typer.Option()] = "fail",
    tracking_uri: Annotated[str | None, typer.Option()] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Rolling-origin evaluation (stride 1, every origin) of a registered model on any data."""
    from forecaster import evaluate as ev
    from forecaster import tracking
    from forecaster.job import evaluate_frame
    from forecaster.sources import load_source

    setup_logging(verbose)
    frame, origin = load_source(source, data, parse_list(tickers), start, None, None, bad_rows)
    tracking.configure(tracking_uri)
    forecaster, ref = tracking.load_forecaster(model_uri, device=device)
    result = evaluate_frame(forecaster, frame, forecaster.lookback, forecaster.horizon, from_date)
    metrics = ev.score(result)
    payload = {
        "model_uri": model_uri,
        "model": {"name": ref.name, "version": ref.version, "alias": ref.alias, "run_id": ref.run_id},
        "data": origin,
        "horizon": result.horizon,
        "lookback": forecaster.lookback,
        "n_series": int(len(set(result.series_id.tolist()))),
        "n_origins": int(len(result.series_id)),
        "metrics": metrics,
    }
    if as_json:
        typer.echo(json.dumps(payload))
        return
    console.print(
        metrics_table(
            metrics,
            f"{model_uri} (version {ref.version}) on {origin}: "
            f"{payload['n_series']} series, {payload['n_origins']} origins",
        )
    )


def metrics_table(metrics: dict[str, dict[str, list[float]]], title: str) -> Table:
    """Rows: model and baselines; columns: each metric averaged over steps."""
    names = sorted({m for block in metrics.values() for m in block}, key=lambda m: (m == "coverage", m))
    table = Table(title=title)
    table.add_column("forecast")
    for metric in names:
        table.add_column(metric, justify="right")
    for name, block in metrics.items():
        cells = [f"{sum(block[m]) / len(block[m]):.4f}" if m in block else "" for m in names]
        table.add_row(name, *cells)
    return table


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
