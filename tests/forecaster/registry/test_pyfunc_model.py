"""The MLflow pyfunc (what `mlflow models serve` runs) checks its bars as the library does: a bad
history is an error naming the ticker and row, never a forecast from reordered or repeated bars."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import mlflow
import pandas as pd
import pytest

from forecaster.errors import DataError
from forecaster.registry import tracking

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import CliModel


@pytest.fixture()
def pyfunc(in_cli_store: CliModel) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(f"models:/{in_cli_store.name}@champion")


@pytest.fixture()
def example(in_cli_store: CliModel) -> pd.DataFrame:
    """The model's own input example: ISO text dates, ticker by ticker, oldest first."""
    return tracking.example_input(in_cli_store.frame, in_cli_store.lookback)


def test_pyfunc_refuses_dates_that_are_not_iso_instead_of_sorting_them_as_text(pyfunc, example) -> None:
    us_dates = example.assign(date=pd.to_datetime(example["date"]).dt.strftime("%m/%d/%Y"))

    with pytest.raises(DataError, match=r"ticker AAA date \d\d/\d\d/\d{4} \(row 0\): date: unparseable"):
        pyfunc.predict(us_dates)


def test_pyfunc_refuses_a_repeated_bar_naming_ticker_date_and_row(pyfunc, example) -> None:
    repeated = pd.concat([example, example.tail(1)])  # the index repeats too, as pd.concat leaves it
    last = example.iloc[-1]
    expected = rf"ticker {last['ticker']} date {last['date']} \(row {len(example)}\): duplicate \(ticker, date\)"

    with pytest.raises(DataError, match=expected):
        pyfunc.predict(repeated)


def test_pyfunc_refuses_no_rows_and_too_few_bars_by_name(pyfunc, example, in_cli_store: CliModel) -> None:
    with pytest.raises(DataError, match="data: no rows"):
        pyfunc.predict(example.iloc[:0])
    too_few = rf"ticker AAA: 3 bars, the model needs at least lookback = {in_cli_store.lookback}"
    with pytest.raises(DataError, match=too_few):
        pyfunc.predict(example.groupby("ticker").tail(3))


def test_pyfunc_forecasts_shuffled_iso_bars_as_the_ordered_ones(pyfunc, example) -> None:
    shuffled = example.sample(frac=1.0, random_state=0)

    pd.testing.assert_frame_equal(pyfunc.predict(shuffled), pyfunc.predict(example))


def test_pyfunc_answers_carry_as_of_and_the_trading_date_of_each_step(pyfunc, example, in_cli_store: CliModel) -> None:
    from forecaster.data.calendar import DEFAULT_EXCHANGE, next_sessions

    answer = pyfunc.predict(example)
    last = example.groupby("ticker")["date"].max()
    for ticker, rows in answer.groupby("ticker"):
        assert set(rows["as_of"]) == {last[ticker]}
        expected = [d.isoformat() for d in next_sessions(DEFAULT_EXCHANGE, dt.date.fromisoformat(last[ticker]), 2)]
        assert rows.sort_values("step")["date"].tolist() == expected
    assert list(answer.columns[:4]) == ["ticker", "as_of", "step", "date"]


def test_a_bad_input_is_a_400_whose_message_is_the_cause_in_mlflow_s_scoring_server(pyfunc, example) -> None:
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    repeated = pd.concat([example, example.tail(1)]).reset_index(drop=True)
    body = {"dataframe_split": repeated.to_dict(orient="split")}
    with TestClient(scoring_server.init(pyfunc)) as server:
        response = server.post("/invocations", json=body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "duplicate (ticker, date)" in answer["message"] and "unexpected error" not in answer["message"]
    assert "stack_trace" not in answer or not answer["stack_trace"]
