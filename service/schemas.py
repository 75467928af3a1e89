"""Wire schemas of the API: what clients send and receive, never internal objects."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticKnownError
from pydantic_core.core_schema import ErrorType

from forecaster.data.calendar import CALENDAR_START
from forecaster.data.rules import TICKER_MAX_LENGTH, check_ticker, latest_bar_day, ohlc_breaks, parse_day
from forecaster.model.predictor import MAX_PRICE, MIN_PRICE

# Where a forecast's history came from: the request itself, or the service's ticker source
# (yfinance live, yfinance's cache when Yahoo could not be reached, the data file, the sample).
HistorySource = Literal["request", "yfinance", "yfinance-cache", "file", "sample"]


def not_bool(error: ErrorType) -> BeforeValidator:
    """JSON `true`/`false` is no number, though pydantic's lax mode reads it as 1 or 0 (numeric
    strings it still reads): refused as pydantic's own `error` (`float_type`, `int_type`), so the
    message is the one any other value of the wrong type gets."""

    def refuse(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticKnownError(error)
        return value

    return BeforeValidator(refuse)


# Declared rather than coded, so pydantic checks them natively, names the field
# (`series[3].history[17].high`) and OpenAPI documents the bounds; the bounds belong to the model.
# (The Field goes before the validator: so its bounds stay native constraints.)
Price = Annotated[
    float,
    Field(
        ge=MIN_PRICE,
        le=MAX_PRICE,
        allow_inf_nan=False,
        description=f"a positive price from {MIN_PRICE:g} to {MAX_PRICE:g}",
    ),
    not_bool("float_type"),
]
Count = Annotated[int, Field(ge=1), not_bool("int_type")]  # a whole number from 1
# A model or alias named in a request: never "" (it would silently mean the default one).
Name = Annotated[str, Field(min_length=1)]
VERSION_DIGITS = re.compile(r"[1-9][0-9]*")


def version_number(value: Any) -> Any:
    """A registry version is an identifier: a JSON integer (`3.0` is one too, as JSON Schema counts
    integers, so the document can say what is accepted), or its digits as text (MLflow writes
    versions as strings, as this service's answers do); never `" 3"`, `"03"`, `"3.0"` or `true`,
    which pydantic's lax mode would read as 3."""
    if isinstance(value, bool):
        raise PydanticKnownError("int_type")
    if isinstance(value, str):
        if not VERSION_DIGITS.fullmatch(value):
            raise ValueError(f"{value!r} is not a version number (a whole number from 1, or its digits as text)")
        return int(value)
    return value


VersionText = Annotated[str, Field(pattern=f"^{VERSION_DIGITS.pattern}$")]
Version = Annotated[
    int,
    Field(ge=1),
    BeforeValidator(version_number, json_schema_input_type=Annotated[int, Field(ge=1)] | VersionText),
]


def ticker_symbol(value: str) -> str:
    """The value when it is a ticker symbol by the library's one rule (forecaster.data.rules.check_ticker,
    the rule of files, yfinance and the retrain settings too); ValueError naming it otherwise."""
    return check_ticker(value)


def iso_day(value: Any) -> Any:
    """A bar's date by the library's one date parser (forecaster.data.rules.parse_day): ISO text
    YYYY-MM-DD (a time is dropped); never epoch seconds (`"1577836800"`, `1577836800`), which
    pydantic's lax mode would read as 2020-01-01."""
    if isinstance(value, str):
        return parse_day(value).date()
    if isinstance(value, int | float):
        raise ValueError(f"expected a date YYYY-MM-DD, got the number {value!r}")
    return value


ID_MAX_LENGTH = 64
Ticker = Annotated[
    str,
    Field(min_length=1, max_length=TICKER_MAX_LENGTH, description="a ticker of the service's data source"),
    AfterValidator(ticker_symbol),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bar(Strict):
    date: Annotated[dt.date, BeforeValidator(iso_day, json_schema_input_type=dt.date)]
    open: Price
    high: Price
    low: Price
    close: Price

    @field_validator("date")
    @classmethod
    def observed(cls, value: dt.date) -> dt.date:
        """A bar is an observed day: not before the calendars start, not after tomorrow (UTC; a
        client east of the server may already have today's bar)."""
        if value < CALENDAR_START:
            raise ValueError(f"{value} is before {CALENDAR_START}, the first day of the service's calendars")
        latest = latest_bar_day()
        if value > latest:
            raise ValueError(f"{value} is in the future (bars are observed prices; the latest accepted is {latest})")
        return value

    @model_validator(mode="after")
    def prices_make_sense(self) -> Bar:
        # forecaster.data.rules owns the rules (frames, this bar and the fast path all call it); here they
        # are applied to one bar so that a request's error names the bar
        breaks = ohlc_breaks(self.open, self.high, self.low, self.close)
        if breaks["high_below_low"]:
            raise ValueError(f"high ({self.high}) is below low ({self.low}) on {self.date}")
        if breaks["high_below_top"]:
            raise ValueError(f"high ({self.high}) is below max(open, close) on {self.date}")
        if breaks["low_above_bottom"]:
            raise ValueError(f"low ({self.low}) is above min(open, close) on {self.date}")
        return self


def check_increasing(history: list[Bar] | None) -> list[Bar] | None:
    if history:
        for previous, current in zip(history, history[1:], strict=False):
            if current.date <= previous.date:
                kind = "duplicated" if current.date == previous.date else "not increasing"
                raise ValueError(f"dates must be strictly increasing: {current.date} after {previous.date} ({kind})")
    return history


HISTORY_DESCRIPTION = (
    "daily bars, oldest first; at least the model's lookback (the last lookback are used): a list of "
    'bars, or the same bars as columns (`{"date": [...], "open": [...], ...}`, element i of each is bar i)'
)
BAR_FIELDS: tuple[str, ...] = tuple(Bar.model_fields)  # date, open, high, low, close: the columns too


class ColumnarHistory(Strict):
    """A history as five equally long columns; element i of every column is bar i (oldest first).
    Checked bar by bar like the list form, so an error names `history[i].<field>`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "date": ["2024-06-26", "2024-06-27", "2024-06-28"],
                    "open": [100.0, 101.2, 100.8],
                    "high": [101.5, 101.9, 101.3],
                    "low": [99.6, 100.4, 99.9],
                    "close": [101.1, 100.9, 100.2],
                }
            ]
        },
    )

    date: list[dt.date]
    open: list[Price]
    high: list[Price]
    low: list[Price]
    close: list[Price]


def columns_to_bars(value: Any) -> Any:
    """A columnar history becomes the list of bars it stands for, so one set of bar rules (and
    error locations) serves both forms; anything else passes through to the list's own checks."""
    if not isinstance(value, dict):
        return value
    unknown = [k for k in value if k not in BAR_FIELDS]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}; the columns are {list(BAR_FIELDS)}")
    missing = [k for k in BAR_FIELDS if k not in value]
    if missing:
        raise ValueError(f"missing column(s) {missing}; the columns are {list(BAR_FIELDS)}")
    if not all(isinstance(value[k], list) for k in BAR_FIELDS):
        raise ValueError(f"every column must be a list ({', '.join(BAR_FIELDS)})")
    lengths = {k: len(value[k]) for k in BAR_FIELDS}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns must have the same length, got {lengths}")
    return [dict(zip(BAR_FIELDS, row, strict=True)) for row in zip(*(value[k] for k in BAR_FIELDS), strict=True)]


# The list of bars, or its columnar form (documented as either; validated as the list).
Bars = Annotated[list[Bar], Field(min_length=1)]
HistoryIn = Annotated[Bars, BeforeValidator(columns_to_bars, json_schema_input_type=Bars | ColumnarHistory)]


def exactly_one(*names: str) -> dict[str, Any]:
    """The JSON Schema of "exactly one of these fields is given" (present and not null: a null
    field counts as absent, as the validators read it), for the OpenAPI document."""
    return {
        "oneOf": [
            {
                "required": [name],
                "properties": {name: {"not": {"type": "null"}}}
                | {other: {"type": "null"} for other in names if other != name},
            }
            for name in names
        ]
    }


class SeriesIn(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one("history", "ticker"))

    id: str | None = Field(None, max_length=ID_MAX_LENGTH, description="echoed back (default: the ticker or the index)")
    history: HistoryIn | None = Field(None, description=HISTORY_DESCRIPTION)
    ticker: Ticker | None = None

    _increasing = field_validator("history")(classmethod(lambda cls, v: check_increasing(v)))

    @model_validator(mode="after")
    def one_source(self) -> SeriesIn:
        if (self.history is None) == (self.ticker is None):
            raise ValueError("give exactly one of 'history' or 'ticker'")
        return self


def not_both(first: str, second: str) -> dict[str, Any]:
    """The JSON Schema of "not both of these fields are given" (a null one counts as absent)."""
    given = {"not": {"type": "null"}}
    return {"not": {"required": [first, second], "properties": {first: given, second: given}}}


class ForecastRequest(Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra=exactly_one("history", "ticker", "series") | not_both("alias", "version")
    )

    model: Name | None = Field(None, description="Registered model name (default: the service's)")
    alias: Name | None = Field(None, description="Registry alias (default champion); excludes 'version'")
    version: Version | None = Field(None, description="Registry version; excludes 'alias'")
    horizon: Count | None = Field(None, description="Steps to return (default: the model's horizon)")
    history: HistoryIn | None = Field(None, description=HISTORY_DESCRIPTION)
    ticker: Ticker | None = None
    series: list[SeriesIn] | None = Field(None, min_length=1, description="several series in one request")

    _increasing = field_validator("history")(classmethod(lambda cls, v: check_increasing(v)))

    @model_validator(mode="after")
    def one_form(self) -> ForecastRequest:
        given = [name for name in ("history", "ticker", "series") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of 'history', 'ticker' or 'series' (got {given or 'none'})")
        if self.alias is not None and self.version is not None:
            raise ValueError("give either 'alias' or 'version', not both")
        return self

    def all_series(self) -> list[SeriesIn]:
        if self.series is not None:
            return self.series
        # Already validated as part of this request: no second pass over every bar.
        return [SeriesIn.model_construct(id=self.ticker or "series", history=self.history, ticker=self.ticker)]


class ForecastPoint(BaseModel):
    step: int = Field(description="1 = the first trading session after the last bar")
    date: dt.date = Field(description="the trading session this step forecasts")
    close: float = Field(description="median forecast of the close (the 0.5 quantile)")
    lower: float = Field(description="lowest quantile of `levels`: the lower edge of the outer band")
    upper: float = Field(description="highest quantile of `levels`: the upper edge of the outer band")
    quantiles: list[float] = Field(description="the close's quantile for each of `levels`, in the same order")


class SeriesForecast(BaseModel):
    id: str
    source: HistorySource = Field(description="where the history came from ('request' when it was sent)")
    as_of: dt.date = Field(description="date of the last observed bar the forecast starts from")
    stale: bool = Field(
        description="the service's history is older than its freshness limit and was served anyway "
        "(stale_policy=serve); always false for histories sent in the request"
    )
    points: list[ForecastPoint]


class ModelInfo(BaseModel):
    name: str = Field(description="The registered model, or the fixed reference served (FORECASTER_MODEL_URI)")
    version: str | None = Field(description="The registered version; null for a model that is not registered")
    alias: str | None
    run_id: str | None


class ForecastResponse(BaseModel):
    model: ModelInfo
    device: str
    levels: list[float] = Field(description="the model's quantile levels, increasing; 0.5 is the median")
    forecasts: list[SeriesForecast]


class LoadedModelInfo(ModelInfo):
    lookback: int
    horizon: int
    arch: str
    mode: str
    quantiles: list[float]
    device: str
    loaded_at: dt.datetime


class ErrorDetail(BaseModel):
    detail: str = Field(description="what went wrong, in words")


class FieldError(BaseModel):
    loc: list[str | int] = Field(
        description='where: `body`, then the path to the field at fault (`["body", "series", 1, "history", 17, '
        '"close"]`); `["body", position]` for a body that is not JSON'
    )
    msg: str = Field(description="what is wrong, in words, naming the field first (`series[1].history[17].close: ...`)")
    type: str = Field(description="the kind of problem (pydantic's error types, `value_error` for the service's rules)")


class ValidationErrorDetail(BaseModel):
    """Every 422, in FastAPI's shape: `detail` lists each problem, in the order found."""

    detail: list[FieldError] = Field(min_length=1, description="each problem, in the order found")


def _example_history(days: int = 120, end: str = "2024-06-28") -> list[dict[str, object]]:
    """Synthetic daily bars for the OpenAPI examples: valid, and more than a usual lookback (60)."""
    rng = np.random.default_rng(7)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, days)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high, low = np.maximum(open_, close) * 1.004, np.minimum(open_, close) * 0.996
    dates = pd.bdate_range(end=end, periods=days)
    return [
        {"date": f"{d:%Y-%m-%d}", "open": round(o, 2), "high": round(h, 2), "low": round(lo, 2), "close": round(c, 2)}
        for d, o, h, lo, c in zip(dates, open_.tolist(), high.tolist(), low.tolist(), close.tolist(), strict=True)
    ]


def request_examples(bars: int = 120, horizon: int = 3) -> dict[str, dict[str, object]]:
    """One working body per request shape, for Swagger's "Try it out" (the generated example would
    fill every field at once and be refused): histories of `bars` bars (the served model's
    lookback, once one is loaded: service.routes.forecast.document_model)."""
    history = _example_history(bars)
    return {
        "history": {"summary": "One series sent as daily bars", "value": {"history": history}},
        "ticker": {
            "summary": "One ticker of the service's data source",
            "value": {"ticker": "AAPL", "horizon": horizon},
        },
        "series": {
            "summary": "Several series at once, sent or by ticker, with ids",
            "value": {"series": [{"id": "mine", "history": history}, {"id": "msft", "ticker": "MSFT"}]},
        },
    }


REQUEST_EXAMPLES = request_examples()
