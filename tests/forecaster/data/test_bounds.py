"""Files are bounded like requests (issue 19.3, 19.5, 19.6): a price outside [MIN_PRICE, MAX_PRICE], a
bar dated after tomorrow and a file too large to read are refused naming ticker, date and column, or
the file and the limit, before anything is trained on them."""

from __future__ import annotations

import datetime as dt
import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from factories import random_ohlc, to_csv

import forecaster.data.files as files
import forecaster.data.rules as rules
from forecaster.data.files import DEFAULT_LIMITS, ReadLimits, read_ohlc_file, read_ohlc_path
from forecaster.data.rules import MAX_PRICE, MIN_PRICE, latest_bar_day
from forecaster.data.sources import load_source
from forecaster.data.validate import validate_ohlc
from forecaster.errors import DataError

PRICES = ["open", "high", "low", "close"]


def bars(days: int = 30) -> pd.DataFrame:
    return random_ohlc(tickers=("AAA", "BBB"), days=days)


def row_of(frame: pd.DataFrame, ticker: str, day: int) -> int:
    return int(frame.index[frame["ticker"] == ticker][day])


# ---------------------------------------------------------------- 19.3: prices a model can take


def test_a_bar_with_high_and_close_of_1e308_in_a_file_is_refused_naming_ticker_date_and_column(tmp_path: Path) -> None:
    frame = bars()
    i = row_of(frame, "BBB", 17)
    frame.loc[i, ["high", "close"]] = 1e308
    to_csv(frame, tmp_path / "bars.csv")
    with pytest.raises(DataError) as refused:
        load_source(path=tmp_path / "bars.csv")
    message = str(refused.value)
    assert f"ticker BBB date {frame.at[i, 'date']:%Y-%m-%d}" in message
    assert "high: 1e+308 is outside the accepted prices (1e-06 to 1e+09)" in message
    assert "close: 1e+308 is outside the accepted prices" in message
    assert "1 bad row(s)" in message


@pytest.mark.parametrize("price", [MAX_PRICE * 1.5, MIN_PRICE / 2])
def test_a_price_outside_the_bounds_is_dropped_with_drop(price: float, caplog: pytest.LogCaptureFixture) -> None:
    frame = bars()
    i = row_of(frame, "AAA", 5)
    frame.loc[i, PRICES] = price
    with caplog.at_level(logging.WARNING):
        clean = validate_ohlc(frame, bad_rows="drop")
    assert len(clean) == len(frame) - 1 and frame.at[i, "date"] not in set(clean.loc[clean["ticker"] == "AAA", "date"])
    assert "dropped 1 bad row(s)" in caplog.text and "is outside the accepted prices" in caplog.text


def test_prices_at_the_bounds_are_accepted() -> None:
    frame = bars()
    frame.loc[row_of(frame, "AAA", 3), PRICES] = MAX_PRICE
    frame.loc[row_of(frame, "AAA", 4), PRICES] = MIN_PRICE
    assert len(validate_ohlc(frame, splits="warn")) == len(frame)


# ---------------------------------------------------------------- 19.5: no bar after tomorrow


def test_a_bar_dated_2099_in_a_file_is_refused_naming_ticker_and_date(tmp_path: Path) -> None:
    frame = bars()
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d").astype(object)
    i = row_of(frame, "AAA", 29)
    frame.at[i, "date"] = "2099-01-04"
    to_csv(frame, tmp_path / "bars.csv")
    with pytest.raises(DataError) as refused:
        load_source(path=tmp_path / "bars.csv")
    message = str(refused.value)
    assert f"ticker AAA date 2099-01-04 (row {i}): date: after tomorrow" in message
    assert f"the latest accepted is {latest_bar_day()}, by the UTC date" in message
    dropped, _ = load_source(path=tmp_path / "bars.csv", bad_rows="drop")
    assert dropped["date"].max() < pd.Timestamp("2099-01-01")


def test_tomorrow_by_the_utc_date_is_the_latest_day_a_bar_may_carry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rules, "utc_today", lambda: dt.date(2024, 6, 27))
    assert latest_bar_day() == dt.date(2024, 6, 28)
    frame = random_ohlc(tickers=("AAA",), days=10, end="2024-06-28")  # ends tomorrow: accepted
    assert validate_ohlc(frame)["date"].max() == pd.Timestamp("2024-06-28")
    later = random_ohlc(tickers=("AAA",), days=10, end="2024-07-01")  # the next business day after it
    with pytest.raises(DataError, match=r"ticker AAA date 2024-07-01 .*after tomorrow .*2024-06-28"):
        validate_ohlc(later)


# ---------------------------------------------------------------- 19.6: files of bounded size


def write_bomb(path: Path, rows: int = 3, digits: int = 1_000_000) -> Path:
    """A gzip that inflates ~1000-fold: rows whose close is a number `digits` long (the issue's
    300 rows of 1 MB numbers, smaller)."""
    head = "date,ticker,open,high,low,close\n"
    number = "1" * digits
    with gzip.open(path, "wt") as out:
        out.write(head)
        for day in range(rows):
            out.write(f"2020-01-{day + 1:02d},AAA,1,{number},1,{number}\n")
    return path


def test_a_gzip_bomb_of_long_numbers_is_refused_before_pandas_parses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = write_bomb(tmp_path / "bomb.csv.gz")
    assert bomb.stat().st_size < 20_000  # 3 MB of text inside

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the CSV parser was reached")

    monkeypatch.setattr(files.pd, "read_csv", never)
    with pytest.raises(DataError) as refused:
        load_source(path=bomb)
    message = str(refused.value)
    assert f"'{bomb}' is too large to read: a cell of more than {DEFAULT_LIMITS.max_cell_chars:,} characters" in message
    assert "ReadLimits" in message and "\n" not in message


@pytest.mark.parametrize(
    ("limits", "what"),
    [
        (ReadLimits(max_rows=59), "more than 59 rows"),
        (ReadLimits(max_bytes=2_000), "more than 2,000 bytes of text"),
        (ReadLimits(max_cell_chars=9), "a cell of more than 9 characters"),  # the dates are 10
    ],
)
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_each_limit_refuses_a_file_past_it(tmp_path: Path, limits: ReadLimits, what: str, suffix: str) -> None:
    path = tmp_path / f"bars{suffix}"
    bars().to_csv(path, index=False, date_format="%Y-%m-%d")  # 60 rows, about 5 KB
    with pytest.raises(DataError, match=f"too large to read: {what}"):
        load_source(path=path, limits=limits)
    at_the_limit = ReadLimits(max_rows=60, max_bytes=path.stat().st_size * 10, max_cell_chars=20)
    assert len(read_ohlc_file(path, at_the_limit)) == 60


def test_a_parquet_file_is_measured_by_its_metadata(tmp_path: Path) -> None:
    bars().to_parquet(tmp_path / "bars.parquet")
    with pytest.raises(DataError, match="too large to read: 60 rows, more than 59"):
        read_ohlc_file(tmp_path / "bars.parquet", ReadLimits(max_rows=59))
    with pytest.raises(DataError, match="bytes of data, more than 100"):
        read_ohlc_file(tmp_path / "bars.parquet", ReadLimits(max_bytes=100))


def test_a_folder_s_files_share_the_row_limit(tmp_path: Path) -> None:
    frame = bars()
    to_csv(frame[frame["ticker"] == "AAA"], tmp_path / "a.csv")
    to_csv(frame[frame["ticker"] == "BBB"], tmp_path / "b.csv")
    assert len(read_ohlc_path(tmp_path, ReadLimits(max_rows=60))) == 60
    with pytest.raises(DataError, match=r"b\.csv' is too large to read: more than \d+ rows \(with the folder's"):
        read_ohlc_path(tmp_path, ReadLimits(max_rows=45))


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_rows: expected a positive number, got 0"):
        ReadLimits(max_rows=0)


def test_a_cell_split_across_read_chunks_is_measured_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "CHUNK_BYTES", 7)  # every cell spans chunks
    path = tmp_path / "bars.csv"
    path.write_text("date,ticker,open,high,low,close\n2020-01-02,AAA,1,1,1," + "1" * 30 + "\n")
    with pytest.raises(DataError, match="a cell of more than 29 characters"):
        read_ohlc_file(path, ReadLimits(max_cell_chars=29))
    assert np.isclose(read_ohlc_file(path, ReadLimits(max_cell_chars=30))["close"].iloc[0], float("1" * 30))
