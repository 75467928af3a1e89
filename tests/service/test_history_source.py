"""Ticker histories when yfinance is the source but cannot be reached: its cache, then local data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster.errors import DataError, SourceError
from service import history
from service.history import HistoryProvider
from service.settings import Settings


def bars(ticker: str, days: int, start: str = "2024-01-02") -> pd.DataFrame:
    dates = pd.bdate_range(start, periods=days)
    close = 100.0 + np.arange(days, dtype=float)
    return pd.DataFrame(
        {
            "date": dates,
            "ticker": ticker,
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": 1000,
        }
    )


@pytest.fixture
def yahoo_down(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []
    real = history.load_source

    def fake(source: str, *args: object, **kwargs: object) -> object:
        if source == "yfinance":
            asked.append(",".join(kwargs.get("tickers") or []))  # type: ignore[arg-type]
            raise SourceError("yahoo: unreachable (test)")
        return real(source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(history, "load_source", fake)
    return asked


def test_ticker_history_falls_back_to_the_yfinance_cache(tmp_path: Path, yahoo_down: list[str]) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    bars("ZZZ", 40).to_parquet(cache / "ZZZ.parquet", index=False)
    provider = HistoryProvider(Settings(data_source="yfinance", cache_dir=str(cache)))
    window, last = provider.bars("ZZZ", 30)
    assert yahoo_down == ["ZZZ"]  # it did try the source first
    assert window.shape == (30, 4)
    assert window[-1, 3] == pytest.approx(139.0)  # the last cached close
    assert last == bars("ZZZ", 40)["date"].iloc[-1].date()


def test_ticker_without_cache_falls_back_to_the_configured_file(tmp_path: Path, yahoo_down: list[str]) -> None:
    path = tmp_path / "bars.csv"
    bars("QQQ", 35).to_csv(path, index=False)
    provider = HistoryProvider(Settings(data_source="yfinance", cache_dir=str(tmp_path / "empty"), data_path=str(path)))
    window, _ = provider.bars("QQQ", 20)
    assert window[-1, 3] == pytest.approx(134.0)
    with pytest.raises(DataError, match="ticker 'NOPE'"):
        provider.bars("NOPE", 20)
