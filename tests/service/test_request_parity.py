"""The same history gives the same numbers by every path: a sent history, a ticker of the
service's file, a batch of series, the MLflow pyfunc and the library (one window function)."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd

from forecaster.config import quantile_column
from forecaster.registry import tracking


def quantiles_of(body, index=0) -> np.ndarray:
    """[H, Q] quantiles of one series of a response."""
    return np.array([p["quantiles"] for p in body["forecasts"][index]["points"]])


def test_route_ticker_series_pyfunc_and_library_agree(client, registry, baseline, history):
    by_history = quantiles_of(baseline)  # the last 30 bars of AAA, sent
    by_ticker = client.post("/forecast", json={"ticker": "AAA"})
    by_series = client.post("/forecast", json={"series": [{"ticker": "BBB"}, {"history": history}, {"ticker": "AAA"}]})
    assert by_ticker.status_code == 200 and by_series.status_code == 200, (by_ticker.text, by_series.text)

    frame = registry.frame[registry.frame["ticker"] == "AAA"]
    pyfunc = mlflow.pyfunc.load_model(f"models:/{registry.model}@champion").predict(
        frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d"))[["ticker", "date", "open", "high", "low", "close"]]
    )
    forecaster, _ = tracking.load_forecaster(f"models:/{registry.model}@champion", device="cpu")
    library = forecaster.predict_windows(forecaster.window(frame).values[None]).quantiles[0]

    levels = baseline["levels"]
    by_pyfunc = pyfunc[[quantile_column(level) for level in levels]].to_numpy()
    # a batch of one may round differently from a batch of many in the last float32 bits
    for name, got in {
        "ticker": quantiles_of(by_ticker.json()),
        "series (sent)": quantiles_of(by_series.json(), 1),
        "series (ticker)": quantiles_of(by_series.json(), 2),
        "pyfunc": by_pyfunc,
        "library": library,
    }.items():
        np.testing.assert_allclose(got, by_history, rtol=1e-5, err_msg=name)
    assert by_ticker.json()["forecasts"][0]["as_of"] == baseline["forecasts"][0]["as_of"] == "2023-12-22"


def test_pyfunc_output_has_every_quantile_column_beside_close_lower_upper(registry):
    frame = registry.frame.groupby("ticker").tail(registry.lookback)
    output = mlflow.pyfunc.load_model(f"models:/{registry.model}@champion").predict(
        frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d"))[["ticker", "date", "open", "high", "low", "close"]]
    )
    columns = ["ticker", "as_of", "step", "date", "close", "lower", "upper", "q0.1", "q0.5", "q0.9"]
    assert list(output.columns) == columns
    pd.testing.assert_series_equal(output["close"], output["q0.5"], check_names=False)
    pd.testing.assert_series_equal(output["lower"], output["q0.1"], check_names=False)
    pd.testing.assert_series_equal(output["upper"], output["q0.9"], check_names=False)
    assert output["ticker"].tolist() == [t for t in ("AAA", "BBB", "CCC") for _ in range(registry.horizon)]
