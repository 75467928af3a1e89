"""The command line's shared options: one name, help text and panel per option, used by every
command that takes it (`--model` above all), and the help texts derived from the settings.

Old option names stay as hidden aliases for one release (``--model-uri``, ``--register-as``):
`one_model` merges them with the new one. Panels group a command's help (typer's
rich_help_panel) so that each fits an 80-column terminal.
"""

from __future__ import annotations

from typing import Annotated

import typer

from forecaster.config import BAD_ROWS, SPLITS

DATA, MODEL, TRAINING, REGISTRY, OUTPUT, RUN = "Data", "Model", "Training", "Registry", "Output", "Run"
SOURCES = ("sample", "yfinance", "file")
MODEL_FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-<id>, runs:/<run_id>/model or a model folder"

ModelOption = Annotated[str | None, typer.Option("--model", help=f"\\[required] {MODEL_FORMS}", rich_help_panel=MODEL)]
OldModelOption = Annotated[str | None, typer.Option("--model-uri", hidden=True)]  # the name before 0.2
DataOption = Annotated[
    str | None, typer.Option(help="CSV/Parquet file or folder, date,ticker,open,high,low,close", rich_help_panel=DATA)
]
SourceOption = Annotated[
    str, typer.Option(help=" | ".join(SOURCES) + " (file when --data is given)", rich_help_panel=DATA)
]
TickersOption = Annotated[
    str | None, typer.Option(help="Comma-separated tickers (default: every one)", rich_help_panel=DATA)
]
BadRowsOption = Annotated[
    str,
    typer.Option(
        help=f"{' | '.join(BAD_ROWS)}: bad rows and short tickers fail, or are left out", rich_help_panel=DATA
    ),
]
SplitsOption = Annotated[
    str, typer.Option(help=f"{' | '.join(SPLITS)}: jumps like unadjusted stock splits", rich_help_panel=DATA)
]
DateFormatOption = Annotated[
    str | None, typer.Option(help="strptime layout of non-ISO dates, e.g. %d/%m/%Y", rich_help_panel=DATA)
]
CacheDirOption = Annotated[str | None, typer.Option(help="yfinance cache folder", rich_help_panel=DATA)]
ColumnsOption = Annotated[
    str | None,
    typer.Option(
        help="The file's column names: ticker=unique_id,date=ds,open=Open,... (names not given: the standard ones)",
        rich_help_panel=DATA,
    ),
]
DeviceOption = Annotated[str, typer.Option(help="auto | cpu | cuda[:N]", rich_help_panel=RUN)]
TrackingOption = Annotated[
    str | None, typer.Option(help="MLflow store (default: MLFLOW_TRACKING_URI or ./mlruns)", rich_help_panel=REGISTRY)
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log every step")]
ExchangeOption = Annotated[str, typer.Option(help="Calendar of the forecast dates", rich_help_panel=OUTPUT)]
DEFAULT_CACHE_DIR = ".forecaster/cache"


def one_model(model: str | None, old: str | None, flag: str = "--model", old_flag: str = "--model-uri") -> str:
    """The model given by `flag` or its old name, once; else a ValueError naming the flag."""
    if model is not None and old is not None and model != old:
        raise ValueError(f"{flag}: given twice, as {flag} {model} and {old_flag} {old}")
    chosen = model if model is not None else old
    if chosen is None:
        raise ValueError(f"{flag}: missing; expected {MODEL_FORMS}, e.g. {flag} models:/prices@champion")
    return chosen
