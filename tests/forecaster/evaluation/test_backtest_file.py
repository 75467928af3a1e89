"""The backtest file: one row per ticker x origin x step with every origin, the specified columns,
.csv and .parquet, written atomically; and `forecaster evaluate --backtest-out` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from forecaster.data.validate import validate_ohlc
from forecaster.data.windows import Panel
from forecaster.evaluation.backtest import Backtest, backtest, rolling_origins
from forecaster.evaluation.backtest_file import backtest_table, check_backtest_path, write_backtest
from forecaster.interface.cli import app

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import CliModel

LEVELS = (0.1, 0.5, 0.9)
COLUMNS = [
    "ticker",
    "origin",
    "step",
    "date",
    "actual",
    "last_close",
    "q0.1",
    "q0.5",
    "q0.9",
    "ewma_q0.1",
    "ewma_q0.5",
    "ewma_q0.9",
    "garch_q0.1",
    "garch_q0.5",
    "garch_q0.9",
    "rgarch_q0.1",
    "rgarch_q0.5",
    "rgarch_q0.9",
    "har_q0.1",
    "har_q0.5",
    "har_q0.9",
    "naive",
    "drift",
]


def hand_panel() -> Panel:
    """A: 6 closes, B: 4 closes (open = high = low = close), business days from 2021-01-04."""
    closes = {"A": [10.0, 12.0, 11.0, 15.0, 14.0, 13.0], "B": [100.0, 90.0, 95.0, 85.0]}
    parts = [
        pd.DataFrame(
            {"date": pd.bdate_range("2021-01-04", periods=len(c)), "ticker": t, "open": c, "high": c, "low": c}
        ).assign(close=c)
        for t, c in closes.items()
    ]
    return Panel.from_frame(pd.concat(parts, ignore_index=True))


def hand_backtest() -> tuple[Panel, np.ndarray, Backtest]:
    panel = hand_panel()
    origins = rolling_origins(panel, lookback=2, horizon=2)

    def predict(X: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
        last = X[:, -1, 3].astype(np.float64)[:, None, None]
        return last * np.array([0.9, 1.0, 1.2]) * np.ones((len(X), 2, 3)), LEVELS  # -> (N, H, Q)

    return panel, origins, backtest(predict, panel, 2, 2, origins)


def test_table_has_a_row_per_ticker_origin_and_step_with_the_specified_columns() -> None:
    panel, origins, result = hand_backtest()

    table = backtest_table(result)

    assert table.columns.tolist() == COLUMNS
    assert len(table) == len(origins) * 2 == 8
    assert table["ticker"].tolist() == ["A"] * 6 + ["B"] * 2
    assert table["step"].tolist() == [1, 2] * 4
    np.testing.assert_array_equal(table["origin"].to_numpy()[::2], panel.dates[origins])
    # step h's date is the h-th bar after the origin: A's origin 2021-01-05 (row 1) -> 01-06, 01-07
    assert table["date"].iloc[:2].tolist() == [pd.Timestamp("2021-01-06"), pd.Timestamp("2021-01-07")]
    np.testing.assert_array_equal(table["actual"], [11, 15, 15, 14, 14, 13, 95, 85])
    np.testing.assert_array_equal(table["last_close"], np.repeat([12, 11, 15, 90], 2))
    np.testing.assert_allclose(table["q0.1"], 0.9 * table["last_close"])
    np.testing.assert_allclose(table["q0.9"], 1.2 * table["last_close"])
    np.testing.assert_allclose(table["ewma_q0.5"], table["last_close"])
    np.testing.assert_allclose(table["naive"], table["last_close"])
    for name in ("garch", "rgarch", "har"):  # too little history for them here
        assert table[f"{name}_q0.5"].isna().all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_round_trips_every_origin_in_both_formats(tmp_path: Path, suffix: str) -> None:
    panel, origins, result = hand_backtest()
    path = tmp_path / "out" / f"bt{suffix}"

    write_backtest(result, path)

    read = pd.read_csv(path, parse_dates=["origin", "date"]) if suffix == ".csv" else pd.read_parquet(path)
    assert read.columns.tolist() == COLUMNS
    assert len(read) == len(origins) * 2
    origins_read = read.drop_duplicates(["ticker", "origin"])["origin"].to_numpy(dtype="datetime64[ns]")
    np.testing.assert_array_equal(origins_read, panel.dates[origins])
    pd.testing.assert_frame_equal(read, backtest_table(result), check_dtype=False)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, result = hand_backtest()
    path = tmp_path / "bt.csv"
    path.write_text("previous\n")

    def broken(self: pd.DataFrame, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        write_backtest(result, path)

    assert path.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["bt.csv"]


def test_other_suffixes_are_refused_naming_the_formats() -> None:
    with pytest.raises(ValueError, match=r"expected a \.parquet or \.csv file, got 'bt\.xlsx'"):
        check_backtest_path("bt.xlsx")


def evaluate_args(model: CliModel, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--model-uri",
        f"models:/{model.name}@champion",
        "--data",
        str(model.data_path),
        "--device",
        "cpu",
        *extra,
    ]


def test_cli_evaluate_writes_the_backtest_and_reports_levels_and_significance(
    in_cli_store: CliModel, tmp_path: Path
) -> None:
    model = in_cli_store
    out = tmp_path / "bt.parquet"

    result = CliRunner().invoke(app, evaluate_args(model, "--json", "--backtest-out", str(out)))

    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"metrics", "horizon", "n_series", "n_origins", "model", "lookback", "data", "model_uri"} <= set(payload)
    assert payload["levels"] == list(model.run.outcome.forecaster.quantiles)
    table = pd.read_parquet(out)
    assert len(table) == payload["n_origins"] * model.horizon
    frame = validate_ohlc(pd.read_csv(model.data_path))
    panel = Panel.from_frame(frame)
    origins = rolling_origins(panel, model.lookback, model.horizon)
    assert table.groupby("ticker")["origin"].nunique().sum() == len(origins) == payload["n_origins"]
    assert {f"q{level:g}" for level in payload["levels"]} <= set(table.columns)
    assert {"ewma_q0.5", "garch_q0.5", "naive", "drift"} <= set(table.columns)
    # the model's median in the file is the forecast the metrics scored
    errors = (table["q0.5"] - table["actual"]).abs().groupby(table["step"]).mean()
    assert errors.tolist() == pytest.approx(payload["metrics"]["model"]["mae"], rel=1e-6)
    for key, metric in (("model_vs_naive", "abs_error"), ("model_vs_ewma", "mean_pinball")):
        block = payload["significance"][key]
        assert block["metric"] == metric
        assert len(block["p_value"]) == len(block["verdict"]) == model.horizon
        assert set(block["verdict"]) <= {"better", "worse", "indistinguishable"}
    assert {"spl", "msis", "coverage_80", "width_80", "pinball_q0.1"} <= set(payload["metrics"]["ewma"])


def test_cli_evaluate_table_says_better_worse_or_indistinguishable(in_cli_store: CliModel) -> None:
    result = CliRunner().invoke(app, evaluate_args(in_cli_store))
    assert result.exit_code == 0, result.output
    assert "model vs naive on abs_error (Diebold-Mariano, 5%): h1 " in result.output
    assert "model vs ewma on mean_pinball (Diebold-Mariano, 5%): h1 " in result.output
    assert "ewma" in result.output and "msis" in result.output


def test_cli_evaluate_refuses_an_unknown_backtest_suffix_before_loading_anything(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["evaluate", "--model-uri", "models:/nope@champion", "--backtest-out", str(tmp_path / "bt.txt")]
    )
    assert result.exit_code == 2
    assert "--backtest-out: backtest file: expected a .parquet or .csv file, got 'bt.txt'" in result.output
    assert "Traceback" not in result.output
