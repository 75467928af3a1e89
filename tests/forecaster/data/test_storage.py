"""forecaster.data.storage: a write is all or nothing and leaves no temp file; a merge never changes a
stored bar silently (refused naming ticker and dates, or logged with overwrite)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from factories import random_ohlc

from forecaster.data.storage import (
    PRICE_TOLERANCE,
    BarsChangedError,
    find_revisions,
    merge_bars,
    write_table_atomically,
)
from forecaster.errors import DataError

PRICES = ["open", "high", "low", "close"]


def bars(days: int = 40, start: str = "2021-01-01") -> pd.DataFrame:
    return random_ohlc(tickers=("AAA", "BBB"), days=days, start=start)


def stored_and_new() -> tuple[pd.DataFrame, pd.DataFrame]:
    """30 stored days and a download of days 25..40: 6 overlapping days per ticker."""
    everything = bars(40)
    days = sorted(everything["date"].unique())
    stored = everything[everything["date"] <= days[29]].reset_index(drop=True)
    new = everything[everything["date"] >= days[24]].reset_index(drop=True)
    return stored, new


# ---------------------------------------------------------------- atomic write


def test_write_leaves_only_the_file_and_keeps_attrs(tmp_path: Path) -> None:
    path = tmp_path / "store" / "bars.parquet"  # the folder is created
    frame = bars(10)
    frame.attrs = {"caller": "kept"}

    write_table_atomically(frame, path, attrs={"covered_from": "2021-01-01"})

    assert [p.name for p in path.parent.iterdir()] == ["bars.parquet"]
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, frame)
    assert back.attrs == {"covered_from": "2021-01-01"}
    assert frame.attrs == {"caller": "kept"}  # the caller's frame is not changed


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_new_file_gets_the_umask_mode_and_a_replaced_one_keeps_its_mode(tmp_path: Path, suffix: str) -> None:
    import os

    path = tmp_path / f"bars{suffix}"
    previous = os.umask(0o027)
    try:
        write_table_atomically(bars(), path)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o640  # not mkstemp's private 0600

    path.chmod(0o604)
    write_table_atomically(bars(days=10), path)
    assert path.stat().st_mode & 0o777 == 0o604


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bars.parquet"
    write_table_atomically(bars(10), path)
    before = path.read_bytes()
    temps: list[Path] = []
    real_to_parquet = pd.DataFrame.to_parquet

    def half_then_fail(self: pd.DataFrame, target: Any, *args: Any, **kwargs: Any) -> None:
        temps.append(Path(target))
        real_to_parquet(self.head(3), target, *args, **kwargs)  # some bytes are on disk already
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_then_fail)

    with pytest.raises(OSError, match="disk full"):
        write_table_atomically(bars(20), path)

    (temp,) = temps
    assert temp.parent == path.parent and temp.name != path.name  # written beside it, under another name
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["bars.parquet"]


def test_failed_first_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: pd.DataFrame, *args: Any, **kwargs: Any) -> None:
        raise ValueError("cannot convert column")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail)
    with pytest.raises(ValueError, match="cannot convert"):
        write_table_atomically(bars(10), tmp_path / "bars.parquet")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- merge


def test_identical_overlap_merges_silently(caplog: pytest.LogCaptureFixture) -> None:
    stored, new = stored_and_new()
    with caplog.at_level(logging.DEBUG, logger="forecaster.data.storage"):
        merged = merge_bars(stored, new)
    assert caplog.records == []
    pd.testing.assert_frame_equal(merged, bars(40))


def test_difference_within_tolerance_is_not_a_change() -> None:
    stored, new = stored_and_new()
    new[PRICES] *= 1 + PRICE_TOLERANCE / 10  # float noise, far below the tolerance
    assert find_revisions(stored, new) == []
    assert len(merge_bars(stored, new)) == 80


def test_changed_stored_bars_are_refused_naming_ticker_dates_and_size() -> None:
    stored, new = stored_and_new()
    changed = new.index[(new["ticker"] == "BBB")][[1, 3]]
    new.loc[changed, ["close", "high"]] *= 1.02
    first, second = (f"{d:%Y-%m-%d}" for d in new.loc[changed, "date"])

    with pytest.raises(DataError) as refused:
        merge_bars(stored, new, what="stored bars 'x.parquet'")

    message = str(refused.value)
    assert f"ticker BBB: 2 bar(s) changed ({first}, {second})" in message
    assert "max relative difference 0.02" in message and "stored bars 'x.parquet'" in message
    assert "AAA" not in message and "\n" not in message
    # no option is named: the library cannot know what its caller calls it (pipelines.refresh adds it)
    assert isinstance(refused.value, BarsChangedError) and "overwrite=True" not in message


def test_overwrite_replaces_changed_bars_and_logs_them(caplog: pytest.LogCaptureFixture) -> None:
    stored, new = stored_and_new()
    i = new.index[new["ticker"] == "AAA"][0]
    new.loc[i, "close"] = new.loc[i, "high"]  # a revised close, still a valid bar
    with caplog.at_level(logging.WARNING, logger="forecaster.data.storage"):
        merged = merge_bars(stored, new, overwrite=True)
    assert f"ticker AAA: 1 bar(s) changed ({new.at[i, 'date']:%Y-%m-%d})" in caplog.text
    row = merged[(merged["ticker"] == "AAA") & (merged["date"] == new.at[i, "date"])]
    assert row["close"].item() == new.at[i, "close"]  # the new bar won
    assert not merged.duplicated(["ticker", "date"]).any() and len(merged) == 80


def test_a_constant_factor_is_named_a_readjustment() -> None:
    stored, new = stored_and_new()
    new.loc[new["ticker"] == "AAA", PRICES] *= 0.5  # a 2:1 split applied to the whole history
    new.loc[new.index[new["ticker"] == "BBB"][0], "close"] *= 0.999  # one scattered edit

    aaa, bbb = find_revisions(stored, new)

    assert aaa.ticker == "AAA" and len(aaa.dates) == 6 and aaa.factor == pytest.approx(0.5)
    assert "re-adjusted" in aaa.describe()
    assert bbb.ticker == "BBB" and len(bbb.dates) == 1 and bbb.factor is None
    with pytest.raises(DataError, match="ticker AAA: 6 bar\\(s\\) changed .*every price times 0.5"):
        merge_bars(stored, new)


def test_merge_without_stored_bars_is_the_new_bars_sorted() -> None:
    new = bars(10).sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(merge_bars(None, new), bars(10))
