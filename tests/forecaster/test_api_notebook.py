"""The notebook API beyond train: forecaster.backtest's long DataFrame and forecaster.plot's figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from factories import random_ohlc
from matplotlib.figure import Figure

import forecaster
from forecaster.errors import DataError
from forecaster.model.predictor import Forecaster

LOOKBACK, HORIZON = 10, 2
BARS = random_ohlc(tickers=("AAA", "BBB", "CCC"), days=80, seed=4)


@pytest.fixture(scope="module")
def model() -> Forecaster:
    tiny = {"hidden_size": 4, "batch_size": 64, "device": "cpu"}
    return forecaster.train(BARS, lookback=LOOKBACK, horizon=HORIZON, epochs=1, track=False, **tiny).model


def test_backtest_is_the_long_table_of_evaluate_backtest_out(model: Forecaster, tmp_path: Path) -> None:
    table = forecaster.backtest(model, BARS)

    forecaster.evaluate(model, BARS, backtest_out=tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(table, pd.read_parquet(tmp_path / "b.parquet"), check_dtype=False)
    assert list(table.columns[:6]) == ["ticker", "origin", "step", "date", "actual", "last_close"]
    assert {"q0.1", "q0.5", "q0.9", "naive", "ewma_q0.5"} <= set(table.columns)
    origins_per_ticker = 80 - LOOKBACK - HORIZON + 1
    assert len(table) == 3 * origins_per_ticker * HORIZON
    assert (table.groupby(["ticker", "origin"]).size() == HORIZON).all()


def test_backtest_from_date_keeps_later_origins_and_a_short_ticker_is_named(model: Forecaster) -> None:
    cut = BARS["date"].sort_values().unique()[60]
    assert (forecaster.backtest(model, BARS, from_date=cut)["origin"] >= cut).all()
    short = pd.concat([BARS, random_ohlc(tickers=("ZZZ",), days=5)])
    with pytest.raises(DataError, match="ZZZ"):
        forecaster.backtest(model, short)


def test_plot_of_a_forecast_is_a_fan_chart_per_ticker_after_its_history(model: Forecaster) -> None:
    figure = forecaster.plot(model.forecast(BARS), history=BARS)

    assert isinstance(figure, Figure)
    axes = figure.get_axes()
    assert [ax.get_title(loc="left").split(",")[0] for ax in axes] == ["AAA", "BBB", "CCC"]
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["close", "0.1-0.9", "median"]
    assert axes[0].get_xlabel() == "date" and axes[0].get_ylabel() == "price"
    close_line = axes[0].get_lines()[0]
    assert len(close_line.get_xdata()) == 60  # the last HISTORY_BARS closes


def test_plot_of_a_backtest_draws_actual_median_and_band_and_says_how_many_tickers(model: Forecaster) -> None:
    table = forecaster.backtest(model, BARS)

    figure = forecaster.plot(table, step=2, max_tickers=2)

    assert figure.get_suptitle() == "backtest, 2 step(s) ahead by target date: 2 of 3 tickers"
    labels = [t.get_text() for t in figure.get_axes()[0].get_legend().get_texts()]
    assert labels[0].startswith("0.1-0.9 band (covered ") and labels[1:] == ["actual", "median"]
    actual = figure.get_axes()[0].get_lines()[0]
    want = table[(table["ticker"] == "AAA") & (table["step"] == 2)].sort_values("date")["actual"]
    assert list(actual.get_ydata()) == pytest.approx(want.tolist())


def test_plot_refuses_other_tables_steps_and_tickers_naming_them(model: Forecaster) -> None:
    with pytest.raises(ValueError, match="table: expected a forecast table"):
        forecaster.plot(BARS)
    with pytest.raises(ValueError, match=r"step: 7 is not in the table; its steps are \[1, 2\]"):
        forecaster.plot(forecaster.backtest(model, BARS), step=7)
    with pytest.raises(ValueError, match=r"tickers: \['NOPE'\] not in the table"):
        forecaster.plot(model.forecast(BARS), tickers=["NOPE"])
