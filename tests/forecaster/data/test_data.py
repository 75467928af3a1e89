"""forecaster.data.validate: every bad row is refused with its ticker and date, or dropped with a
counted warning; files load whatever their header case; dates are ISO unless a format is
declared (never guessed); an unreadable file is one error naming it. Stock splits: test_stock_splits.py;
prices, dates and sizes out of bounds: test_bounds.py; tickers: test_tickers.py."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from factories import random_ohlc, to_csv

from forecaster.data.sources import load_source
from forecaster.data.validate import (
    parse_day,
    read_ohlc_file,
    read_ohlc_path,
    require_rows,
    row_problems,
    validate_ohlc,
)
from forecaster.errors import DataError

PRICES = ["open", "high", "low", "close"]


def good_frame() -> pd.DataFrame:
    return random_ohlc(tickers=("AAA", "BBB"), days=30)


def row_of(frame: pd.DataFrame, ticker: str, day: int) -> int:
    return int(frame.index[frame["ticker"] == ticker][day])


def date_of(frame: pd.DataFrame, index: int) -> str:
    return f"{pd.Timestamp(frame.at[index, 'date']):%Y-%m-%d}"


def set_close(value: object) -> Callable[[pd.DataFrame, int], None]:
    def change(frame: pd.DataFrame, i: int) -> None:
        frame["close"] = frame["close"].astype(object)
        frame.at[i, "close"] = value

    return change


def set_price(column: str, value: float) -> Callable[[pd.DataFrame, int], None]:
    def change(frame: pd.DataFrame, i: int) -> None:
        frame.at[i, column] = value

    return change


def high_below_close(frame: pd.DataFrame, i: int) -> None:
    frame.at[i, "high"] = max(frame.at[i, "open"], frame.at[i, "close"]) * 0.99


def low_above_open(frame: pd.DataFrame, i: int) -> None:
    frame.at[i, "low"] = min(frame.at[i, "open"], frame.at[i, "close"]) * 1.01


BAD_ROWS = {
    "non-numeric price": (set_close("abc"), "close: not a finite number (abc)"),
    "empty price": (set_close(None), "close: not a finite number (missing)"),
    "zero price": (set_price("open", 0.0), "open: not positive"),
    "negative price": (set_price("low", -3.0), "low: not positive"),
    "high below max(open, close)": (high_below_close, "high below max(open, close)"),
    "low above min(open, close)": (low_above_open, "low above min(open, close)"),
}


@pytest.mark.parametrize("case", BAD_ROWS, ids=list(BAD_ROWS))
def test_bad_row_is_refused_naming_ticker_and_date(case: str) -> None:
    change, reason = BAD_ROWS[case]
    frame = good_frame()
    i = row_of(frame, "BBB", 17)
    change(frame, i)
    with pytest.raises(DataError) as error:
        validate_ohlc(frame)
    message = str(error.value)
    assert f"ticker BBB date {date_of(frame, i)}" in message
    assert reason in message
    assert "1 bad row(s)" in message


def test_duplicate_ticker_date_is_refused_naming_both() -> None:
    frame = good_frame()
    i = row_of(frame, "AAA", 9)
    duplicated = pd.concat([frame, frame.loc[[i]]], ignore_index=True)
    with pytest.raises(DataError, match=f"ticker AAA date {date_of(frame, i)} .*duplicate \\(ticker, date\\)"):
        validate_ohlc(duplicated)


@pytest.mark.parametrize("layout", ["appended", "next to the first (sorted input)", "tickers not alphabetical"])
def test_the_later_row_of_a_duplicate_is_the_bad_one_whatever_the_row_order(layout: str) -> None:
    frame = good_frame()
    i = row_of(frame, "AAA", 9)
    aaa, bbb = frame[frame["ticker"] == "AAA"], frame[frame["ticker"] == "BBB"]
    parts = {
        "appended": [frame, frame.loc[[i]]],
        "next to the first (sorted input)": [frame.loc[:i], frame.loc[[i]], frame.loc[i + 1 :]],
        "tickers not alphabetical": [bbb, aaa.loc[:i], frame.loc[[i]], aaa.loc[i + 1 :]],
    }[layout]
    rows = pd.concat(parts, ignore_index=True)
    later = int(np.flatnonzero((rows["ticker"] == "AAA") & (rows["date"] == frame.at[i, "date"]))[1])
    reasons = row_problems(rows)
    assert reasons[reasons != ""].to_dict() == {later: "duplicate (ticker, date)"}


def test_rows_grouped_by_ticker_in_any_order_come_out_sorted() -> None:
    frame = good_frame()
    grouped = pd.concat([frame[frame["ticker"] == "BBB"], frame[frame["ticker"] == "AAA"]], ignore_index=True)
    pd.testing.assert_frame_equal(validate_ohlc(grouped), frame, check_dtype=False)
    pd.testing.assert_frame_equal(validate_ohlc(frame), frame, check_dtype=False)  # already in order


def test_unparseable_date_is_refused_showing_the_raw_text_and_ticker() -> None:
    frame = good_frame()
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d").astype(object)
    i = row_of(frame, "AAA", 4)
    frame.at[i, "date"] = "2021-02-31x"
    with pytest.raises(DataError, match="ticker AAA date 2021-02-31x .*date: unparseable 2021-02-31x"):
        validate_ohlc(frame)


@pytest.mark.parametrize("column", ["date", "ticker", "open", "high", "low", "close"])
def test_missing_column_is_named(column: str) -> None:
    with pytest.raises(DataError, match=f"missing column\\(s\\) \\['{column}'\\]"):
        validate_ohlc(good_frame().drop(columns=[column]))


def test_ticker_with_too_few_rows_for_lookback_plus_horizon_is_named() -> None:
    frame = pd.concat([good_frame(), random_ohlc(tickers=("SHORT",), days=8)], ignore_index=True)
    with pytest.raises(DataError, match="too few rows for lookback \\+ horizon \\(25 needed\\): SHORT has 8"):
        validate_ohlc(frame, min_rows=25)


def test_drop_policy_drops_short_tickers_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    frame = pd.concat([good_frame(), random_ohlc(tickers=("SHORT",), days=8)], ignore_index=True)
    with caplog.at_level(logging.WARNING, logger="forecaster.data.validate"):
        clean = validate_ohlc(frame, bad_rows="drop", min_rows=25)
    assert sorted(clean["ticker"].unique()) == ["AAA", "BBB"]
    assert "dropped 1 ticker(s)" in caplog.text and "SHORT has 8" in caplog.text


def test_drop_policy_removes_bad_rows_warns_with_the_count_and_keeps_good_rows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frame = good_frame()
    bad = [row_of(frame, "AAA", 3), row_of(frame, "BBB", 11), row_of(frame, "BBB", 20)]
    set_close("n/a")(frame, bad[0])
    set_price("open", -1.0)(frame, bad[1])
    high_below_close(frame, bad[2])
    expected = good_frame().drop(index=bad).reset_index(drop=True)

    with caplog.at_level(logging.WARNING, logger="forecaster.data.validate"):
        clean = validate_ohlc(frame, bad_rows="drop")

    assert "dropped 3 bad row(s)" in caplog.text
    assert f"ticker BBB date {date_of(frame, bad[1])}" in caplog.text
    pd.testing.assert_frame_equal(clean, expected[["date", "ticker", *PRICES]], check_dtype=False)


def test_validate_sorts_by_ticker_then_date_and_normalises_dates() -> None:
    frame = good_frame()
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    shuffled["date"] = shuffled["date"] + pd.Timedelta(hours=16)  # a time part is dropped
    clean = validate_ohlc(shuffled)
    pd.testing.assert_frame_equal(clean, frame, check_dtype=False)


def test_csv_with_any_header_case_loads(tmp_path: Path) -> None:
    frame = good_frame()
    path = tmp_path / "bars.csv"
    to_csv(
        frame.rename(
            columns={"date": "Date", "ticker": "Ticker", "open": "OPEN", "high": "High", "low": "LOW", "close": "Close"}
        ),
        path,
    )
    assert path.read_text().splitlines()[0] == "Date,Ticker,OPEN,High,LOW,Close"
    clean = validate_ohlc(read_ohlc_file(path))
    np.testing.assert_allclose(clean[PRICES].to_numpy(), frame[PRICES].to_numpy())
    assert clean["date"].tolist() == frame["date"].tolist()


def test_blank_and_text_cells_in_a_csv_are_named_by_column_ticker_and_date(tmp_path: Path) -> None:
    frame = good_frame()
    to_csv(frame, tmp_path / "bars.csv")
    lines = (tmp_path / "bars.csv").read_text().splitlines()
    i, j = row_of(frame, "AAA", 2), row_of(frame, "BBB", 5)
    lines[1 + i] = lines[1 + i].rsplit(",", 1)[0] + ","  # close left empty
    cells = lines[1 + j].split(",")
    lines[1 + j] = ",".join([*cells[:2], "#N/A!", *cells[3:]])  # open is text
    (tmp_path / "bars.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        validate_ohlc(read_ohlc_file(tmp_path / "bars.csv"))
    message = str(error.value)
    assert f"ticker AAA date {date_of(frame, i)} (row {i}): close: not a finite number (missing)" in message
    assert f"ticker BBB date {date_of(frame, j)} (row {j}): open: not a finite number (#N/A!)" in message


def test_parquet_file_loads(tmp_path: Path) -> None:
    frame = good_frame()
    frame.to_parquet(tmp_path / "bars.parquet")
    clean = validate_ohlc(read_ohlc_file(tmp_path / "bars.parquet"))
    pd.testing.assert_frame_equal(clean, frame, check_dtype=False)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.csv' does not exist"):
        read_ohlc_file(tmp_path / "nope.csv")


# ---------------------------------------------------------------- dates: ISO or declared, never guessed


def with_text_dates(frame: pd.DataFrame, layout: str) -> pd.DataFrame:
    return frame.assign(date=frame["date"].dt.strftime(layout).astype(object))


def test_day_first_dates_are_refused_naming_rows_and_asking_for_a_format(tmp_path: Path) -> None:
    frame = good_frame()
    with_text_dates(frame, "%d/%m/%Y").to_csv(tmp_path / "bars.csv", index=False)

    with pytest.raises(DataError) as error:
        validate_ohlc(read_ohlc_file(tmp_path / "bars.csv"))

    message = str(error.value)
    first = f"{frame.at[0, 'date']:%d/%m/%Y}"  # 01/01/2020: as readable month-first, but not guessed
    assert f"ticker AAA date {first} (row 0): date: unparseable {first}" in message
    assert "ISO YYYY-MM-DD" in message and "date format" in message and "--date-format" in message
    assert "\n" not in message


def test_day_first_dates_are_refused_even_when_dropping_bad_rows() -> None:
    frame = with_text_dates(good_frame(), "%d/%m/%Y")
    with pytest.raises(DataError, match="date: unparseable .*pass a date format"):
        validate_ohlc(frame, bad_rows="drop")


def test_a_declared_date_format_reads_day_first_dates_without_swapping(tmp_path: Path) -> None:
    frame = good_frame()
    with_text_dates(frame, "%d/%m/%Y").to_csv(tmp_path / "bars.csv", index=False)

    clean, _ = load_source(path=tmp_path / "bars.csv", date_format="%d/%m/%Y")

    assert clean["date"].tolist() == frame["date"].tolist()
    pd.testing.assert_frame_equal(clean, frame, check_dtype=False)


def test_dates_not_matching_the_declared_format_are_named() -> None:
    frame = with_text_dates(good_frame(), "%d/%m/%Y")
    i = row_of(frame, "BBB", 6)
    frame.at[i, "date"] = "2020-01-09"
    with pytest.raises(DataError, match=f"ticker BBB date 2020-01-09 \\(row {i}\\): date: unparseable .*'%d/%m/%Y'"):
        validate_ohlc(frame, date_format="%d/%m/%Y")


@pytest.mark.parametrize(
    "stamp", ["2020-01-02", "2020-01-02 16:00:00", "2020-01-02T09:30", "2020-01-02T20:00:00-05:00", "2020-01-02T23:59Z"]
)
def test_iso_dates_with_a_time_keep_the_date_they_name(stamp: str) -> None:
    frame = random_ohlc(tickers=("AAA",), days=1, start="2020-01-02").assign(date=stamp)
    # 20:00 at UTC-5 is already the 3rd in UTC: the bar is still the 2nd's
    assert validate_ohlc(frame)["date"].tolist() == [pd.Timestamp("2020-01-02")]


def test_datetime_columns_pass_as_they_are() -> None:
    frame = good_frame()
    frame["date"] = frame["date"].dt.tz_localize("America/New_York") + pd.Timedelta(hours=16)
    assert validate_ohlc(frame)["date"].tolist() == good_frame()["date"].tolist()


# ---------------------------------------------------------------- unreadable files: one line naming the file


def test_columns_that_differ_only_in_case_are_one_error_naming_them(tmp_path: Path) -> None:
    frame = good_frame().assign(Close=lambda f: f["close"])
    to_csv(frame, tmp_path / "bars.csv")

    with pytest.raises(DataError) as error:
        read_ohlc_file(tmp_path / "bars.csv")
    assert "columns ['close', 'Close']" in str(error.value) and "bars.csv" in str(error.value)
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match="columns \\['close', 'Close'\\]"):
        validate_ohlc(frame)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def truncated_gzip(tmp_path: Path) -> Path:
    to_csv(random_ohlc(days=300), tmp_path / "full.csv")
    packed = gzip.compress((tmp_path / "full.csv").read_bytes())
    return write_bytes(tmp_path / "bars.csv.gz", packed[: len(packed) // 2])


GARBAGE = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
LATIN_1 = "date,ticker,open,high,low,close\n2020-01-02,CAFÉ,1,1,1,1\n".encode("latin-1")
UNREADABLE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated gzip": (truncated_gzip, "truncated or corrupt archive"),
    "binary garbage csv": (lambda d: write_bytes(d / "bars.csv", GARBAGE), "not UTF-8 text"),
    "binary garbage gzip": (lambda d: write_bytes(d / "bars.csv.gz", GARBAGE), "Not a gzipped file"),
    "binary garbage parquet": (lambda d: write_bytes(d / "bars.parquet", GARBAGE), "Parquet"),
    "latin-1 text": (lambda d: write_bytes(d / "bars.csv", LATIN_1), "not UTF-8 text"),
    "empty file": (lambda d: write_bytes(d / "bars.csv", b""), "the file is empty"),
    "not a table": (lambda d: write_bytes(d / "bars.csv", b"hello\nworld\n"), "missing column(s)"),
}


@pytest.mark.parametrize("case", UNREADABLE, ids=list(UNREADABLE))
def test_unreadable_file_is_one_data_error_naming_the_file(case: str, tmp_path: Path) -> None:
    make, reason = UNREADABLE[case]
    path = make(tmp_path)
    with pytest.raises(DataError) as error:  # not EOFError (the CLI printed only "Aborted.") nor a traceback
        load_source(path=path)
    message = str(error.value)
    assert f"'{path}'" in message and reason in message and "\n" not in message


def test_a_folder_of_files_reads_as_one_frame(tmp_path: Path) -> None:
    frame = good_frame()
    to_csv(frame[frame["ticker"] == "AAA"], tmp_path / "aaa.csv")
    frame[frame["ticker"] == "BBB"].to_parquet(tmp_path / "bbb.parquet")
    (tmp_path / "notes.txt").write_text("not data")

    clean = validate_ohlc(read_ohlc_path(tmp_path))

    pd.testing.assert_frame_equal(clean, frame, check_dtype=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="folder '.*empty' holds no CSV or Parquet file"):
        read_ohlc_path(tmp_path / "empty")


def test_row_problems_checks_a_single_history_without_ticker_or_date() -> None:
    history = good_frame().drop(columns=["ticker", "date"]).head(4)
    history.loc[2, "low"] = history.loc[2, "high"] * 1.1
    assert row_problems(history).tolist() == ["", "", "low above min(open, close)", ""]


def test_a_ticker_whose_every_row_is_dropped_is_not_listed_as_short(caplog: pytest.LogCaptureFixture) -> None:
    frame = pd.concat([good_frame(), random_ohlc(tickers=("GONE",), days=5)], ignore_index=True)
    frame.loc[frame["ticker"] == "GONE", "open"] = -1.0  # every GONE row is bad, and dropped
    with caplog.at_level(logging.WARNING, logger="forecaster.data.validate"):
        clean = validate_ohlc(frame, bad_rows="drop", min_rows=25)
    assert sorted(clean["ticker"].unique()) == ["AAA", "BBB"]
    assert "dropped 5 bad row(s)" in caplog.text and "GONE has" not in caplog.text and "ticker(s)" not in caplog.text


def test_validation_leaves_the_callers_frame_as_it_was() -> None:
    frame = good_frame().sample(frac=1.0, random_state=3)  # unsorted: validation sorts its own copy
    frame.loc[frame.index[4], "ticker"] = "  AAA "  # stripped in the copy
    frame.loc[frame.index[7], "close"] = -1.0  # dropped from the copy
    before = frame.copy()
    validate_ohlc(frame, bad_rows="drop", splits="adjust")
    pd.testing.assert_frame_equal(frame, before)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2013-02-28", "2013-02-28"),
        (" 2013-02-28T15:30:00+02:00 ", "2013-02-28"),
        (pd.Timestamp("2013-02-28 09:30"), "2013-02-28"),
        (pd.Timestamp("2013-02-28 09:30", tz="America/New_York"), "2013-02-28"),
        (np.datetime64("2013-02-28"), "2013-02-28"),
    ],
)
def test_parse_day_takes_iso_text_and_dates(value: object, expected: str) -> None:
    assert parse_day(value, "from") == pd.Timestamp(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("01/02/2013", "start: expected a date YYYY-MM-DD, got '01/02/2013'"),  # ambiguous: never guessed
        ("yesterday", "start: expected a date YYYY-MM-DD, got 'yesterday'"),
        ("", "start: expected a date YYYY-MM-DD, got ''"),
        ("2013-02-30", "start: '2013-02-30' is not a calendar date"),
    ],
)
def test_parse_day_names_the_option_of_a_bad_date(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        parse_day(value, "start")


def test_validate_refuses_unknown_choices_and_an_empty_frame() -> None:
    frame = random_ohlc(days=10)
    with pytest.raises(ValueError, match="bad_rows: expected 'fail' or 'drop', got 'bogus'"):
        validate_ohlc(frame, bad_rows="bogus")
    with pytest.raises(ValueError, match="splits: expected 'warn' or 'fail' or 'adjust', got 'x'"):
        validate_ohlc(frame, splits="x")
    with pytest.raises(DataError, match="^data: no rows$"):
        validate_ohlc(frame.iloc[:0])


def test_require_rows_fails_or_drops_short_tickers_by_name(caplog: pytest.LogCaptureFixture) -> None:
    frame = validate_ohlc(pd.concat([random_ohlc(("AAA",), days=12), random_ohlc(("BBB",), days=5)]))
    with pytest.raises(DataError, match=r"too few rows for lookback \+ horizon \(10 needed\): BBB has 5"):
        require_rows(frame, 10)
    with caplog.at_level(logging.WARNING):
        kept = require_rows(frame, 10, "drop")
    assert kept["ticker"].unique().tolist() == ["AAA"] and len(kept) == 12
    assert "BBB has 5" in caplog.text
    assert require_rows(frame, 5) is frame or require_rows(frame, 5).equals(frame)


def test_a_volume_that_is_text_is_a_bad_row_but_an_empty_volume_is_not() -> None:
    frame = random_ohlc(("AAA",), days=3).assign(volume=["lots", None, "7"])
    with pytest.raises(DataError, match=r"date 2020-01-01 \(row 0\): volume: not a number \(lots\)"):
        validate_ohlc(frame)
    kept = validate_ohlc(frame, bad_rows="drop")
    assert len(kept) == 2 and np.isnan(kept["volume"].iloc[0]) and kept["volume"].iloc[1] == 7.0


def test_a_bad_row_of_a_folder_is_named_by_its_file_and_row_there(tmp_path: Path) -> None:
    bars = random_ohlc(("AAPL",), days=5)
    to_csv(bars, tmp_path / "a.csv")
    to_csv(bars.iloc[2:4], tmp_path / "b.csv")  # the same two days again

    raw = read_ohlc_path(tmp_path)
    with pytest.raises(DataError) as refused:
        validate_ohlc(raw)
    assert f"ticker AAPL date {bars['date'].iloc[2]:%Y-%m-%d} (file b.csv row 0): duplicate (ticker, date)" in str(
        refused.value
    )
    clean = validate_ohlc(raw, bad_rows="drop")
    assert len(clean) == 5 and clean.attrs == {}  # renumbered rows no longer point into the files
    assert raw.attrs  # the caller's frame keeps them


def test_a_frame_with_a_repeated_index_is_validated_and_its_rows_named_by_position() -> None:
    frame = pd.concat([random_ohlc(("AAA",), days=5), random_ohlc(("BBB",), days=5)])  # index 0..4 twice
    assert len(validate_ohlc(frame)) == 10
    frame.iloc[7, frame.columns.get_loc("close")] = -1.0
    with pytest.raises(DataError, match=r"ticker BBB date \S+ \(row 7\): close: not positive"):
        validate_ohlc(frame)
