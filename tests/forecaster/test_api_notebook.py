"""The notebook API beyond train: forecaster.backtest's long DataFrame and forecaster.plot's figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


NAMES = {"ticker": "unique_id", "date": "ds", "open": "Open", "high": "High", "low": "Low", "close": "Close"}
FOREIGN = BARS.rename(columns=NAMES)  # NeuralForecast's ids and times, Yahoo's OHLC names


def test_forecast_backtest_evaluate_and_train_take_a_mapped_frame(model: Forecaster) -> None:
    mapping = {"id_col": "unique_id", "time_col": "ds", "columns": {"open": "Open", "close": "Close"}}
    pd.testing.assert_frame_equal(model.forecast(FOREIGN, **mapping), model.forecast(BARS))
    pd.testing.assert_frame_equal(forecaster.forecast(model, FOREIGN, **mapping), model.forecast(BARS))
    pd.testing.assert_frame_equal(forecaster.backtest(model, FOREIGN, **mapping), forecaster.backtest(model, BARS))
    report = forecaster.evaluate(model, FOREIGN, **mapping)
    assert report["n_series"] == 3
    tiny = {"lookback": LOOKBACK, "horizon": HORIZON, "hidden_size": 4, "epochs": 0, "device": "cpu"}
    trained = forecaster.train(FOREIGN, track=False, id_col="unique_id", time_col="ds", **tiny)
    assert sorted(trained.model.bundle.meta["tickers"]) == ["AAA", "BBB", "CCC"]


def test_an_unmapped_foreign_frame_is_refused_saying_how_to_map(model: Forecaster) -> None:
    with pytest.raises(DataError, match=r"missing column\(s\) \['date', 'ticker'\].*id_col= / time_col="):
        model.forecast(FOREIGN)


def test_the_cli_columns_option_maps_a_file_for_predict_and_evaluate(
    model: Forecaster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from factories import to_csv
    from typer.testing import CliRunner

    from forecaster.interface.cli import app

    monkeypatch.chdir(tmp_path)
    folder = model.save(tmp_path / "model")
    to_csv(FOREIGN.rename(columns={"Close": "Adj Close"}), tmp_path / "foreign.csv")
    columns = "ticker=unique_id,date=ds,close=Adj Close"
    common = ["--model", str(folder), "--data", "foreign.csv", "--device", "cpu"]
    runner = CliRunner()

    result = runner.invoke(app, ["predict", *common, "--columns", columns, "--out", "f.csv"])
    assert result.exit_code == 0, result.output
    want = model.forecast(BARS)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "f.csv")["q0.5"], want["q0.5"], rtol=1e-5)
    result = runner.invoke(app, ["evaluate", *common, "--columns", columns, "--json"])
    assert result.exit_code == 0, result.output
    refused = runner.invoke(app, ["predict", *common, "--out", "g.csv"])
    assert refused.exit_code == 2 and "--columns ticker=unique_id" in refused.output
