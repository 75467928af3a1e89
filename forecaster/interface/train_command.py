"""`forecaster train`: flags -> the typed training settings -> one tracked run, optionally registered.

Its options sit in help panels (data, model, training, registry, settings) that fit an
80-column terminal; every setting is also a dotted flag (``--train.lr 1e-3``), listed by
``--settings``. The flat shortcuts stand for settings (`config.SHORTCUTS`), which own the
defaults, choices and rules.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from forecaster.config import TrainingConfig, describe
from forecaster.errors import redact
from forecaster.interface.console import console, friendly_errors, parse_list, setup_logging
from forecaster.interface.options import (
    DATA,
    DEFAULT_CACHE_DIR,
    MODEL,
    REGISTRY,
    TRAINING,
    CacheDirOption,
    ColumnsOption,
    DataOption,
    DateFormatOption,
    SourceOption,
    TrackingOption,
    VerboseOption,
    one_model,
)
from forecaster.interface.overrides import resolve_training, setting_choices, shortcut_help, to_yaml
from forecaster.interface.tables import metrics_table

log = logging.getLogger("forecaster")
SETTINGS = "Settings"


def _opt(short: str, panel: str) -> typer.models.OptionInfo:
    return typer.Option(help=shortcut_help(short), rich_help_panel=panel)


@friendly_errors
def train(
    ctx: typer.Context,
    data: DataOption = None,
    source: SourceOption = "sample",
    tickers: Annotated[
        str | None, typer.Option(help="Comma-separated tickers (yfinance)", rich_help_panel=DATA)
    ] = None,
    start: Annotated[str | None, typer.Option(help="First date YYYY-MM-DD", rich_help_panel=DATA)] = None,
    end: Annotated[str | None, typer.Option(help="Last date YYYY-MM-DD", rich_help_panel=DATA)] = None,
    date_format: DateFormatOption = None,
    columns: ColumnsOption = None,
    cache_dir: CacheDirOption = DEFAULT_CACHE_DIR,
    bad_rows: Annotated[str | None, _opt("bad_rows", DATA)] = None,
    val_fraction: Annotated[float | None, _opt("val_fraction", DATA)] = None,
    test_fraction: Annotated[float | None, _opt("test_fraction", DATA)] = None,
    arch: Annotated[str | None, _opt("arch", MODEL)] = None,
    mode: Annotated[str | None, _opt("mode", MODEL)] = None,
    lookback: Annotated[int | None, _opt("lookback", MODEL)] = None,
    horizon: Annotated[int | None, _opt("horizon", MODEL)] = None,
    hidden: Annotated[int | None, _opt("hidden", MODEL)] = None,
    layers: Annotated[int | None, _opt("layers", MODEL)] = None,
    dropout: Annotated[float | None, _opt("dropout", MODEL)] = None,
    bidirectional: Annotated[
        bool | None, typer.Option("--bidirectional", help=shortcut_help("bidirectional"), rich_help_panel=MODEL)
    ] = None,
    unidirectional: Annotated[bool, typer.Option("--no-bidirectional", hidden=True)] = False,
    quantiles: Annotated[str | None, _opt("quantiles", MODEL)] = None,
    epochs: Annotated[int | None, _opt("epochs", TRAINING)] = None,
    batch_size: Annotated[int | None, _opt("batch_size", TRAINING)] = None,
    lr: Annotated[float | None, _opt("lr", TRAINING)] = None,
    patience: Annotated[int | None, _opt("patience", TRAINING)] = None,
    teacher_forcing: Annotated[float | None, _opt("teacher_forcing", TRAINING)] = None,
    seed: Annotated[int | None, _opt("seed", TRAINING)] = None,
    device: Annotated[str | None, _opt("device", TRAINING)] = None,
    nproc_per_node: Annotated[int | None, _opt("nproc_per_node", TRAINING)] = None,
    nnodes: Annotated[
        int, typer.Option(help="Machines: > 1 re-launches under torchrun (run it on each)", rich_help_panel=TRAINING)
    ] = 1,
    rdzv_endpoint: Annotated[
        str | None, typer.Option(help="HOST:PORT of the torchrun rendezvous (with --nnodes)", rich_help_panel=TRAINING)
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Register the model under NAME", rich_help_panel=REGISTRY)
    ] = None,
    register_as: Annotated[str | None, typer.Option("--register-as", hidden=True)] = None,  # before 0.2
    alias: Annotated[
        str | None, typer.Option(help="Alias to point at the new version, e.g. champion", rich_help_panel=REGISTRY)
    ] = None,
    tracking_uri: TrackingOption = None,
    config_file: Annotated[
        str | None,
        typer.Option("--config", help="YAML settings (as --print-config prints them)", rich_help_panel=SETTINGS),
    ] = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the resolved settings as YAML, exit", rich_help_panel=SETTINGS)
    ] = False,
    list_settings: Annotated[
        bool, typer.Option("--settings", help="List every setting's dotted flag, exit", rich_help_panel=SETTINGS)
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Train a global model over all tickers, tracked in MLflow.

    With --model NAME the model is registered (and --alias points at it).

    Every setting is also a dotted flag (--train.lr 1e-3); --settings lists them; flags > --config > defaults.
    """
    from pathlib import Path

    from forecaster.data.columns import parse_columns
    from forecaster.data.sources import load_source
    from forecaster.model import distributed
    from forecaster.registry import tracking
    from forecaster.run.steps import train_other_rank
    from forecaster.run.tracked import check_registration, tracked_training

    if unidirectional:
        bidirectional = False
    if list_settings:
        Console().print(settings_table())
        return
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
    name = one_model(model, register_as, old_flag="--register-as") if model or register_as else None
    if alias is not None and name is None:
        raise ValueError("alias (--alias): an alias needs --model NAME, the registered model it points into")
    check_registration(name, alias)  # before any data is read, or any process is started
    mapping = parse_columns(columns)
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
            columns=mapping,
        )
    )
    if not group.is_main:
        train_other_rank(frame, config.data, config.model, config.train, validated=True)
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
            register_as=name,
            alias=alias,
            hooks=progress.hooks(),
            validated=True,  # load_source validated it with the data settings
        )
    if result.metrics:
        console.print(metrics_table(result.metrics, "Test split: model vs baselines (mean over steps 1..H)"))
    fit = result.outcome.fit
    console.print(
        f"best epoch {fit.best_epoch} of {len(fit.history)} (val loss {fit.best_val_loss:.4f}), device {fit.device}"
    )
    console.print(f"run id: [bold]{result.run_id}[/]")
    console.print(f"MLflow UI: {result.ui_link}", soft_wrap=True, markup=False, highlight=False)  # one line: a link
    if result.version:
        where = f"models:/{name}@{alias}" if alias else f"models:/{name}/{result.version}"
        console.print(f"registered: [bold]{name}[/] version [bold]{result.version}[/] ({where})")
    typer.echo(json.dumps({"run_id": result.run_id, "version": result.version, "model_uri": result.model_uri}))


def settings_table() -> Table:
    """Every training setting as its dotted flag, with its choices, default and meaning."""
    table = Table(title="forecaster train: every setting (flags > --config file > defaults)", show_lines=False)
    table.add_column("flag", no_wrap=True)
    table.add_column("default")
    table.add_column("meaning")
    for name, description, default in describe(TrainingConfig):
        choices = setting_choices(name)
        table.add_row(
            "--" + name.replace("_", "-"), str(default), (f"{' | '.join(choices)}: " if choices else "") + description
        )
    return table
