"""`forecaster evaluate` and `predict` on inputs a user gets wrong: every one is refused with one
line naming the flag, ticker or date at fault (exit code 2, no trace), before any data or model is
loaded where it can be, and no input file is ever replaced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from factories import random_ohlc, to_csv
from typer.testing import CliRunner

from forecaster.interface.cli import app

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import CliModel


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    output = " ".join(result.output.split())
    assert "Traceback" not in output
    return result.exit_code, output


def evaluate(model: CliModel, data: Path, *extra: str) -> tuple[int, str]:
    uri = f"models:/{model.name}@champion"
    return invoke("evaluate", "--model", uri, "--data", str(data), "--device", "cpu", *extra)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--bad-rows", "bogus", "--bad-rows: expected 'fail' or 'drop', got 'bogus'"),
        ("--splits", "maybe", "--splits: expected 'warn' or 'fail' or 'adjust', got 'maybe'"),
        ("--from", "yesterday", "--from: expected a date YYYY-MM-DD, got 'yesterday'"),
        ("--from", "01/02/2013", "--from: expected a date YYYY-MM-DD, got '01/02/2013'"),
        ("--from", "2013-13-01", "--from: '2013-13-01' is not a calendar date"),
        ("--from", "", "--from: expected a date YYYY-MM-DD, got ''"),
    ],
)
def test_evaluate_refuses_a_bad_flag_before_loading_data_or_model(flag: str, value: str, message: str) -> None:
    # neither the data file nor the model exists: the flag is checked first
    code, output = invoke("evaluate", "--model", "models:/none@champion", "--data", "/nowhere.csv", flag, value)
    assert code == 2
    assert f"error: {message}" in output


@pytest.mark.parametrize("flag", ["--bad-rows", "--splits"])
def test_predict_refuses_an_unknown_choice_before_loading_anything(flag: str, tmp_path: Path) -> None:
    out = tmp_path / "f.csv"
    code, output = invoke("predict", "--model", "models:/none@champion", "--out", str(out), flag, "bogus")
    assert code == 2
    assert f"error: {flag}: expected" in output and "got 'bogus'" in output


def test_evaluate_from_after_the_last_origin_names_that_origin(in_cli_store: CliModel) -> None:
    model = in_cli_store
    code, output = evaluate(model, model.data_path, "--from", "2030-01-01")
    last_date = model.frame.groupby("ticker")["date"].apply(lambda d: pd.Timestamp(d.iloc[-1 - model.horizon])).max()
    assert code == 2
    assert f"no forecast origins on or after 2030-01-01 (from): the last date with lookback {model.lookback}" in output
    assert f"is {last_date:%Y-%m-%d}" in output


def test_evaluate_fails_on_a_ticker_too_short_for_one_origin_unless_told_to_drop_it(
    in_cli_store: CliModel, tmp_path: Path
) -> None:
    model = in_cli_store
    rows = model.lookback + model.horizon - 1
    frame = pd.concat([model.frame, random_ohlc(tickers=("TINY",), days=rows, seed=9)], ignore_index=True)
    data = tmp_path / "bars.csv"
    to_csv(frame, data)

    code, output = evaluate(model, data)
    assert code == 2
    assert f"too few rows for lookback + horizon ({model.lookback + model.horizon} needed): TINY has {rows}" in output

    code, output = evaluate(model, data, "--bad-rows", "drop", "--json")
    assert code == 0, output
    assert "dropped 1 ticker(s)" in output and "TINY" in output
    payload = json.loads(output[output.index('{"model_uri"') :])
    assert payload["n_series"] == 2


def test_evaluate_json_is_strict_json_with_a_flat_ticker_left_out_of_the_scaled_metrics(
    in_cli_store: CliModel, tmp_path: Path
) -> None:
    model = in_cli_store
    flat = random_ohlc(tickers=("FLAT",), days=len(model.frame) // 2, seed=4)
    flat[["open", "high", "low", "close"]] = 10.0
    data = tmp_path / "bars.csv"
    to_csv(pd.concat([model.frame, flat], ignore_index=True), data)

    result = CliRunner().invoke(
        app, ["evaluate", "--model", f"models:/{model.name}@champion", "--data", str(data), "--json"]
    )

    assert result.exit_code == 0, result.output
    line = result.stdout.strip().splitlines()[-1]

    def refuse(constant: str) -> None:
        raise AssertionError(f"not strict JSON: {constant}")

    payload = json.loads(line, parse_constant=refuse)
    assert payload["n_series"] == 3
    for name in ("model", "naive", "ewma"):
        for metric in ("mase", "spl") if name != "naive" else ("mase",):
            values = payload["metrics"][name][metric]
            assert all(isinstance(v, float) and 0.0 < v < 100.0 for v in values), (name, metric, values)
    assert "1 ticker(s) whose close never changes" in result.output and "FLAT" in result.output


def test_evaluate_backtest_out_may_not_replace_the_data_it_reads(in_cli_store: CliModel, tmp_path: Path) -> None:
    model = in_cli_store
    data = tmp_path / "bars.csv"
    data.write_bytes(model.data_path.read_bytes())
    before = data.read_bytes()

    code, output = evaluate(model, data, "--backtest-out", str(data))

    assert code == 2
    assert f"--backtest-out: backtest file: '{data}' is the data file this run reads; write elsewhere" in output
    assert data.read_bytes() == before


def test_predict_out_may_not_replace_or_join_the_data_it_reads(tmp_path: Path) -> None:
    data = tmp_path / "bars.csv"
    data.write_text("date,ticker,open,high,low,close\n2020-01-02,A,1,1,1,1\n")
    before = data.read_bytes()
    base = ("predict", "--model", "models:/none@champion", "--data")

    code, output = invoke(*base, str(data), "--out", str(data))
    assert code == 2
    assert f"--out: forecasts file: '{data}' is the data file this run reads" in output
    assert data.read_bytes() == before

    code, output = invoke(*base, str(tmp_path), "--out", str(tmp_path / "sub" / "f.parquet"))
    assert code == 2
    assert f"is inside the data folder this run reads ('{tmp_path}')" in output
    assert not (tmp_path / "sub").exists()


def test_an_output_that_cannot_be_written_is_refused_before_the_run(tmp_path: Path) -> None:
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    base = ("predict", "--model", "models:/none@champion", "--out")

    code, output = invoke(*base, str(a_file / "f.csv"))
    assert code == 2
    assert f"--out: forecasts file: cannot write '{a_file / 'f.csv'}': '{a_file}' is not a folder" in output

    folder = tmp_path / "looks_like.csv"
    folder.mkdir()
    code, output = invoke(*base, str(folder))
    assert code == 2
    assert f"--out: forecasts file: '{folder}' is a folder; name a file in it" in output


def test_a_folder_that_refuses_a_new_file_is_refused_naming_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)  # what /sys answers, even to root
    code, output = invoke("predict", "--model", "models:/none@champion", "--out", str(tmp_path / "f.csv"))
    assert code == 2
    assert f"--out: forecasts file: cannot write '{tmp_path / 'f.csv'}': Permission denied" in output


def test_a_header_without_rows_is_named_as_such(tmp_path: Path) -> None:
    data = tmp_path / "empty.csv"
    data.write_text("date,ticker,open,high,low,close\n")
    code, output = invoke("evaluate", "--model", "models:/none@champion", "--data", str(data))
    assert code == 2
    assert f"error: data: '{data}' has a header but no rows" in output
