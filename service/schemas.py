"""Wire schemas of the API: what clients send and receive, never internal objects."""

from __future__ import annotations

import datetime as dt
import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bar(Strict):
    date: dt.date
    open: float
    high: float
    low: float
    close: float

    @model_validator(mode="after")
    def prices_make_sense(self) -> Bar:
        for name in ("open", "high", "low", "close"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) is below low ({self.low}) on {self.date}")
        if self.high < max(self.open, self.close):
            raise ValueError(f"high ({self.high}) is below max(open, close) on {self.date}")
        if self.low > min(self.open, self.close):
            raise ValueError(f"low ({self.low}) is above min(open, close) on {self.date}")
        return self


def check_increasing(history: list[Bar] | None) -> list[Bar] | None:
    if history:
        for previous, current in zip(history, history[1:], strict=False):
            if current.date <= previous.date:
                kind = "duplicated" if current.date == previous.date else "not increasing"
                raise ValueError(f"dates must be strictly increasing: {current.date} after {previous.date} ({kind})")
    return history


class SeriesIn(Strict):
    id: str | None = Field(None, max_length=64)
    history: list[Bar] | None = Field(None, min_length=1)
    ticker: str | None = Field(None, min_length=1, max_length=32)

    _increasing = field_validator("history")(classmethod(lambda cls, v: check_increasing(v)))

    @model_validator(mode="after")
    def one_source(self) -> SeriesIn:
        if (self.history is None) == (self.ticker is None):
            raise ValueError("give exactly one of 'history' or 'ticker'")
        return self


class ForecastRequest(Strict):
    model: str | None = Field(None, description="Registered model name (default: the service's)")
    alias: str | None = Field(None, description="Registry alias (default champion); excludes 'version'")
    version: int | None = Field(None, ge=1, description="Registry version; excludes 'alias'")
    horizon: int | None = Field(None, ge=1, description="Steps to return (default: the model's horizon)")
    history: list[Bar] | None = Field(None, min_length=1)
    ticker: str | None = Field(None, min_length=1, max_length=32)
    series: list[SeriesIn] | None = Field(None, min_length=1)

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
    step: int
    date: dt.date
    close: float
    lower: float
    upper: float


class SeriesForecast(BaseModel):
    id: str
    points: list[ForecastPoint]


class ModelInfo(BaseModel):
    name: str
    version: str
    alias: str | None
    run_id: str | None


class ForecastResponse(BaseModel):
    model: ModelInfo
    device: str
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
    detail: str
