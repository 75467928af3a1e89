"""Batch scoring (forecaster.model.batch and `forecaster predict`): one forecast per ticker from its last
lookback bars up to as-of, every quantile, dated by the exchange's sessions, the same numbers as
Forecaster.window + predict (what the service calls), short tickers skipped or refused, written
atomically as parquet or csv."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
import torch
from factories import random_ohlc
from typer.testing import CliRunner

from forecaster.config import DataConfig, ModelConfig
from forecaster.data.validate import validate_ohlc
from forecaster.data.windows import Panel
from forecaster.errors import DataError
from forecaster.interface.cli import app
from forecaster.model.artifact import load_bundle, save_bundle
from forecaster.model.batch import (
    BAD_PRICES,
    BATCH_SIZE,
    STALE_COLUMN,
    TOO_SHORT,
    forecast_bars,
    forecast_panel,
    last_bars,
    write_forecasts,
)
from forecaster.model.networks import build_model
from forecaster.model.predictor import Forecaster
from forecaster.model.scaling import WindowTransform

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import CliModel

LOOKBACK, HORIZON = 12, 3
COLUMNS = ["ticker", "as_of", "step", "date", "close", "q0.1", "q0.5", "q0.9"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Forecaster:
    """A small untrained network with random weights (an untrained head would forecast the last
    close whatever the window, which would prove nothing about which bars were read)."""
    data = DataConfig(lookback=LOOKBACK, horizon=HORIZON, seq_len=6)
    config = ModelConfig(hidden_size=4, head_size=8)
    torch.manual_seed(0)
    network = build_model(config, HORIZON)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.normal_(0.0, 0.3)
    path = save_bundle(
        tmp_path_factory.mktemp("bundle"), network, config, data, WindowTransform(LOOKBACK, data.encoder_steps)
    )
    return Forecaster(load_bundle(path), device="cpu")


@pytest.fixture()
def bars() -> pd.DataFrame:
    """Three tickers ending on Friday 2023-12-22 (Monday is Christmas)."""
    return validate_ohlc(random_ohlc(tickers=("AAA", "BBB", "CCC"), days=40, end="2023-12-22", seed=7))


def expected(model: Forecaster, history: pd.DataFrame) -> np.ndarray:
    """quantiles[H,Q] of one ticker's history through the service's path: window, then predict."""
    return model.predict_windows(model.window(history, field="history").values[None]).quantiles[0]


def rows_of(table: pd.DataFrame, ticker: str) -> pd.DataFrame:
    return table[table["ticker"] == ticker].reset_index(drop=True)


def days(*iso: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(d) for d in iso]


def test_one_row_per_ticker_and_step_with_session_dates_and_every_quantile(
    model: Forecaster, bars: pd.DataFrame
) -> None:
    result = forecast_panel(model, bars)
    table = result.table

    assert list(table.columns) == COLUMNS
    assert len(table) == 3 * HORIZON and result.skipped == {}
    assert table["ticker"].tolist() == [t for t in ("AAA", "BBB", "CCC") for _ in range(HORIZON)]
    assert table["step"].tolist() == [1, 2, 3] * 3
    assert (table["as_of"] == pd.Timestamp("2023-12-22")).all()
    assert rows_of(table, "BBB")["date"].tolist() == days("2023-12-26", "2023-12-27", "2023-12-28")
    np.testing.assert_array_equal(table["close"], table["q0.5"])
    assert (table["q0.1"] < table["q0.5"]).all() and (table["q0.5"] < table["q0.9"]).all()
    assert set(result.timings) == {"window", "forecast", "calendar", "table"}


def test_numbers_equal_the_window_and_predict_of_each_ticker(model: Forecaster, bars: pd.DataFrame) -> None:
    table = forecast_panel(model, bars).table

    for ticker, history in bars.groupby("ticker"):
        got = rows_of(table, str(ticker))[["q0.1", "q0.5", "q0.9"]].to_numpy()
        np.testing.assert_allclose(got, expected(model, history), rtol=1e-6)


def test_as_of_cuts_each_history_at_its_last_bar_on_or_before_the_date(model: Forecaster, bars: pd.DataFrame) -> None:
    bars = bars[~((bars["ticker"] == "CCC") & (bars["date"] == pd.Timestamp("2023-12-08")))]  # CCC misses that Friday
    table = forecast_panel(model, bars, as_of="2023-12-09").table  # a Saturday

    assert rows_of(table, "AAA")["as_of"].iloc[0] == pd.Timestamp("2023-12-08")
    assert rows_of(table, "CCC")["as_of"].iloc[0] == pd.Timestamp("2023-12-07")
    assert rows_of(table, "CCC")["date"].tolist() == days("2023-12-08", "2023-12-11", "2023-12-12")
    for ticker, history in bars.groupby("ticker"):
        cut = history[history["date"] <= pd.Timestamp("2023-12-09")]
        got = rows_of(table, str(ticker))[["q0.1", "q0.5", "q0.9"]].to_numpy()
        np.testing.assert_allclose(got, expected(model, cut), rtol=1e-6)


def test_last_bars_counts_each_tickers_bars_up_to_as_of(bars: pd.DataFrame) -> None:
    panel = Panel.from_frame(bars)
    rows, counts = last_bars(panel, "2023-11-30")
    assert counts.tolist() == [int((bars[bars["ticker"] == t]["date"] <= "2023-11-30").sum()) for t in panel.tickers]
    assert (panel.dates[rows] == np.datetime64("2023-11-30")).all()
    _, before_all = last_bars(panel, "2000-01-01")
    assert before_all.tolist() == [0, 0, 0]


def test_short_tickers_are_skipped_and_named_in_one_warning(
    model: Forecaster, bars: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    bars = bars[(bars["ticker"] != "BBB") | (bars["date"] > pd.Timestamp("2023-12-14"))]  # BBB: 6 bars

    with caplog.at_level(logging.WARNING, logger="forecaster.model.batch"):
        result = forecast_panel(model, bars)

    assert result.skipped == {"BBB": TOO_SHORT}
    assert sorted(result.table["ticker"].unique()) == ["AAA", "CCC"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "1 of 3 ticker(s)" in warnings[0] and "BBB (6 bars)" in warnings[0]
    assert f"lookback = {LOOKBACK}" in warnings[0]


def test_strict_refuses_short_tickers_naming_them(model: Forecaster, bars: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"BBB \(\d+ bars\)"):
        forecast_panel(model, bars, as_of="2023-11-08", strict=False)  # every ticker too short: nothing to forecast
    short = bars[(bars["ticker"] != "BBB") | (bars["date"] > pd.Timestamp("2023-12-14"))]
    with pytest.raises(DataError, match=r"cannot be forecast .* BBB \(6 bars\)"):
        forecast_panel(model, short, strict=True)


def test_a_window_with_a_price_the_model_refuses_is_skipped(model: Forecaster, bars: pd.DataFrame) -> None:
    bars = bars.copy()
    huge = bars["ticker"] == "CCC"
    bars.loc[huge, ["open", "high", "low", "close"]] *= 1e8  # about 3e9, above predict.MAX_PRICE
    result = forecast_panel(model, bars)
    assert result.skipped == {"CCC": BAD_PRICES}
    assert sorted(result.table["ticker"].unique()) == ["AAA", "BBB"]


def test_batch_size_and_workers_do_not_change_the_numbers(model: Forecaster, bars: pd.DataFrame) -> None:
    one = forecast_panel(model, bars).table
    progress: list[tuple[int, int]] = []
    split = forecast_panel(model, bars, batch_size=2, workers=2, progress=lambda d, t: progress.append((d, t))).table

    pd.testing.assert_frame_equal(one, split, rtol=1e-6)
    assert progress == [(2, 3), (3, 3)]


def test_forecast_bars_validates_a_raw_frame_and_is_the_forecasters_forecast(
    model: Forecaster, bars: pd.DataFrame
) -> None:
    raw = bars.assign(date=bars["date"].dt.strftime("%Y-%m-%d")).sample(frac=1.0, random_state=1)  # text, shuffled

    table = forecast_bars(model, raw, as_of="2023-12-15")

    pd.testing.assert_frame_equal(table, forecast_panel(model, bars, as_of="2023-12-15").table)
    pd.testing.assert_frame_equal(model.forecast(raw, as_of="2023-12-15"), table)
    with pytest.raises(ValueError, match="as_of: expected a date"):
        forecast_bars(model, raw, as_of="someday")


def test_an_as_of_past_the_data_is_refused_naming_both_dates(model: Forecaster, bars: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"as_of \(--as-of\): 2024-06-28 is past the data: .* last bar is 2023-12-22"):
        forecast_panel(model, bars, as_of="2024-06-28")
    with pytest.raises(DataError, match="2023-12-26 is past the data"):  # the first session after the last bar
        forecast_bars(model, bars, as_of="2023-12-26", strict=True)
    with pytest.raises(DataError, match="allow_stale=True"):
        model.forecast(bars, as_of="2024-06-28")


def test_an_as_of_after_the_last_bar_with_no_session_between_is_not_stale(
    model: Forecaster, bars: pd.DataFrame
) -> None:
    latest = forecast_panel(model, bars).table
    for day in ("2023-12-23", "2023-12-24", "2023-12-25"):  # the weekend, then Christmas (no session)
        pd.testing.assert_frame_equal(forecast_panel(model, bars, as_of=day).table, latest)


def test_allow_stale_forecasts_from_the_last_bars_with_the_days_since(
    model: Forecaster, bars: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    bars = bars[(bars["ticker"] != "CCC") | (bars["date"] <= pd.Timestamp("2023-12-20"))]  # CCC stops 2 days early
    latest = forecast_panel(model, bars).table
    with caplog.at_level(logging.WARNING, logger="forecaster.model.batch"):
        stale = forecast_panel(model, bars, as_of="2024-06-28", allow_stale=True).table

    pd.testing.assert_frame_equal(stale.drop(columns=STALE_COLUMN), latest)
    days_since = stale.groupby("ticker")[STALE_COLUMN].first().to_dict()
    assert days_since == {"AAA": 189, "BBB": 189, "CCC": 191}  # 2023-12-22 (-20 for CCC) to 2024-06-28
    assert any("2024-06-28 is past the data" in r.getMessage() for r in caplog.records)
    # without as_of, staleness is counted to the data's last date
    own = forecast_panel(model, bars, allow_stale=True).table.groupby("ticker")[STALE_COLUMN].first()
    assert own.to_dict() == {"AAA": 0, "BBB": 0, "CCC": 2}
    via_api = model.forecast(bars, as_of="2024-06-28", allow_stale=True)
    pd.testing.assert_frame_equal(via_api, stale)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_forecasts_are_written_whole_as_parquet_or_csv(
    model: Forecaster, bars: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    table = forecast_panel(model, bars).table
    path = write_forecasts(table, tmp_path / "out" / f"forecasts{suffix}")

    back = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path, parse_dates=["as_of", "date"])
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    if suffix == ".csv":
        assert path.read_text().splitlines()[1].startswith("AAA,2023-12-22,1,2023-12-26,")


def test_a_failed_write_keeps_the_previous_file(model: Forecaster, bars: pd.DataFrame, tmp_path: Path) -> None:
    path = write_forecasts(forecast_panel(model, bars).table, tmp_path / "f.parquet")
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"forecasts file: expected a \.parquet or \.csv file, got 'f.json'"):
        write_forecasts(pd.DataFrame(), tmp_path / "f.json")
    with pytest.raises((TypeError, ValueError)):
        write_forecasts(pd.DataFrame({"bad": [object()]}), path)  # arrow cannot store it
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet"]


def invoke(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def test_cli_predict_writes_the_forecasts_of_the_registered_model(in_cli_store: CliModel, tmp_path: Path) -> None:
    from forecaster.registry import tracking

    out = tmp_path / "forecasts.parquet"
    result = invoke(
        "predict", "--model", "models:/tiny@champion", "--data", str(in_cli_store.data_path), "--out", str(out),
        "--device", "cpu", "--workers", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]

    table = pd.read_parquet(out)
    H = in_cli_store.horizon
    assert list(table.columns) == COLUMNS and len(table) == 2 * H
    loaded, _ = tracking.load_forecaster("models:/tiny@champion", device="cpu")
    frame = validate_ohlc(pd.read_csv(in_cli_store.data_path))
    for ticker, history in frame.groupby("ticker"):
        got = rows_of(table, str(ticker))[["q0.1", "q0.5", "q0.9"]].to_numpy()
        np.testing.assert_allclose(got, expected(loaded, history), rtol=1e-6)
        assert rows_of(table, str(ticker))["as_of"].iloc[0] == history["date"].iloc[-1]


def test_cli_predict_as_of_strict_and_bad_options_are_one_line_with_exit_code_2(
    in_cli_store: CliModel, tmp_path: Path
) -> None:
    base = ["predict", "--model", "models:/tiny@champion", "--data", str(in_cli_store.data_path), "--device", "cpu"]
    first = in_cli_store.frame["date"].min()
    early = f"{first + pd.offsets.BDay(3):%Y-%m-%d}"  # 4 bars: fewer than the lookback

    refused = invoke(*base, "--out", str(tmp_path / "f.csv"), "--as-of", early, "--strict")
    assert refused.exit_code == 2  # type: ignore[attr-defined]
    assert "error: data: 2 of 2 ticker(s) cannot be forecast" in refused.output  # type: ignore[attr-defined]
    assert not (tmp_path / "f.csv").exists()

    for extra, message in (
        (["--out", str(tmp_path / "f.txt")], "--out: forecasts file: expected a .parquet or .csv file"),
        (["--out", str(tmp_path / "f.csv"), "--exchange", "NOPE"], "exchange: 'NOPE' is not an exchange calendar"),
        (["--out", str(tmp_path / "f.csv"), "--as-of", "someday"], "--as-of: expected a date YYYY-MM-DD"),
    ):
        result = invoke(*base, *extra)
        assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
        assert message in " ".join(result.output.split())  # type: ignore[attr-defined]
        # every option is checked before the data or the model is read: no progress bar, no data warning
        assert "forecasting" not in result.output and "WARNING" not in result.output  # type: ignore[attr-defined]

    cut = f"{in_cli_store.frame['date'].max() - pd.offsets.BDay(10):%Y-%m-%d}"
    ok = invoke(*base, "--out", str(tmp_path / "f.csv"), "--as-of", cut, "--batch-size", "1")
    assert ok.exit_code == 0, ok.output  # type: ignore[attr-defined]
    table = pd.read_csv(tmp_path / "f.csv", parse_dates=["as_of", "date"])
    assert (table["as_of"] == pd.Timestamp(cut)).all() and (table["date"] > pd.Timestamp(cut)).all()


def test_cli_predict_as_of_past_the_data_fails_unless_allowed_and_then_writes_the_staleness(
    in_cli_store: CliModel, tmp_path: Path
) -> None:
    last = in_cli_store.frame["date"].max()
    base = ["predict", "--model", "models:/tiny@champion", "--data", str(in_cli_store.data_path), "--device", "cpu"]
    out = tmp_path / "f.csv"

    refused = invoke(*base, "--out", str(out), "--as-of", "2099-06-26", "--strict")
    assert refused.exit_code == 2  # type: ignore[attr-defined]
    text = " ".join(refused.output.split())  # type: ignore[attr-defined]
    assert f"error: as_of (--as-of): 2099-06-26 is past the data: the data's last bar is {last:%Y-%m-%d}" in text
    assert "--allow-stale" in text and "forecasting" not in text and not out.exists()  # before the model loads

    allowed = invoke(*base, "--out", str(out), "--as-of", "2099-06-26", "--allow-stale")
    assert allowed.exit_code == 0, allowed.output  # type: ignore[attr-defined]
    table = pd.read_csv(out, parse_dates=["as_of", "date"])
    assert list(table.columns) == [*COLUMNS, STALE_COLUMN]
    assert (table["as_of"] == last).all() and (table[STALE_COLUMN] == (pd.Timestamp("2099-06-26") - last).days).all()


def test_cli_predict_help_states_the_library_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import typer.rich_utils

    from forecaster.data.calendar import DEFAULT_EXCHANGE

    monkeypatch.setenv("COLUMNS", "200")  # no line wrapped inside a default
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", None)
    text = " ".join(invoke("predict", "--help").output.split())  # type: ignore[attr-defined]
    assert f"default: {BATCH_SIZE}" in text and DEFAULT_EXCHANGE in text
