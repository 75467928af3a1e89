"""Retrain settings are checked when they are read: a bad --config file, time zone, start date or
schedule is one error line naming the file or the setting (exit code 2), before anything runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from e2e_support import one_error_line
from pydantic import ValidationError
from typer.testing import CliRunner

from forecaster.errors import ForecasterError
from pipelines.settings import RetrainSettings, load_settings

BAD_CONFIGS = {
    "unclosed.yaml": ("model_name: [unclosed\n", "is not valid YAML"),
    "list.yaml": ("- a\n- b\n", "must hold a mapping of settings"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_file_is_one_error_naming_the_file_for_retrain_and_rollback(
    name: str, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    text, problem = BAD_CONFIGS[name]
    config = tmp_path / name
    config.write_text(text)
    for args in (
        ["retrain", "--config", str(config), "--print-config"],
        ["rollback", "--model", "m", "--config", str(config)],
    ):
        line = one_error_line(args)
        assert f"config: '{config}'" in line and problem in line, line


def test_config_that_is_a_directory_or_missing_says_so(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    assert "Is a directory" in one_error_line(["retrain", "--config", str(tmp_path), "--print-config"])
    with pytest.raises(ForecasterError, match=r"cannot read '.*missing.yaml': No such file"):
        load_settings(tmp_path / "missing.yaml")


def test_unknown_time_zone_is_rejected_naming_the_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("FORECASTER_RETRAIN_TIMEZONE", "Mars/Base")
    with pytest.raises(ValidationError, match=r"timezone\n.*unknown time zone"):
        load_settings()
    assert "timezone" in one_error_line(["retrain", "--once", "--print-config"])


def test_start_must_be_a_date(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings(None, ["--start", "2010-02-03"]).start == dt.date(2010, 2, 3)
    clean_env.setenv("FORECASTER_RETRAIN_START", "notadate")
    with pytest.raises(ValidationError, match=r"start\n"):
        load_settings()
    assert "start:" in one_error_line(["retrain", "--print-config"])


def test_unquoted_yaml_start_date_is_read(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    config = tmp_path / "retrain.yaml"
    config.write_text("start: 2010-02-03\n")  # YAML reads this as a date, not text
    assert load_settings(config).start == dt.date(2010, 2, 3)


def test_bad_schedule_is_rejected_when_the_settings_are_read(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match=r"schedule\n.*bad weekday '9'"):
        load_settings(None, ["--schedule", "30 18 * * 9"])


@pytest.mark.parametrize(
    "text",
    ['["AAPL","MSFT"]', '[" AAPL", "MSFT "]', "AAPL,MSFT", " AAPL , MSFT ,", "AAPL, MSFT"],
)
def test_tickers_from_the_environment_are_a_comma_list_or_a_json_list(text: str, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("FORECASTER_RETRAIN_TICKERS", text)
    assert load_settings().tickers == ["AAPL", "MSFT"]
    assert load_settings(None, ["--tickers", text]).tickers == ["AAPL", "MSFT"]


def test_print_config_shows_json_list_tickers_as_symbols(clean_env: pytest.MonkeyPatch) -> None:
    from forecaster.interface.cli import app

    clean_env.setenv("FORECASTER_RETRAIN_TICKERS", '["AAPL","MSFT"]')
    result = CliRunner().invoke(app, ["retrain", "--print-config"])
    assert result.exit_code == 0, result.output
    assert "tickers:\n- AAPL\n- MSFT\n" in result.output


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('["AAPL",', "expected A,B or a JSON list"),
        ('["AAPL", ""]', "'' is not a ticker symbol"),
        ('["MS FT"]', "'MS FT' is not a ticker symbol"),
        ("AAPL;MSFT", "'AAPL;MSFT' is not a ticker symbol"),
        ("[1, 2]", "tickers.0"),
    ],
)
def test_tickers_that_are_not_symbols_are_one_error_naming_the_setting(
    text: str, problem: str, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("FORECASTER_RETRAIN_TICKERS", text)
    line = one_error_line(["retrain", "--print-config"])
    assert "tickers" in line and problem in line, line


def test_yfinance_cache_dir_defaults_to_the_data_dir_and_can_be_shared(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings(None, ["--data-dir", "d"]).yfinance_cache_dir == Path("d") / "yfinance"
    clean_env.setenv("FORECASTER_RETRAIN_CACHE_DIR", "/data/cache")
    assert load_settings(None, ["--data-dir", "d"]).yfinance_cache_dir == Path("/data/cache")


def test_the_refresh_retries_default_to_the_library_retry_policy(clean_env: pytest.MonkeyPatch) -> None:
    from forecaster.data.retry import DEFAULT_RETRY

    settings = RetrainSettings()
    assert (settings.retries, settings.retry_backoff_s) == (DEFAULT_RETRY.attempts, DEFAULT_RETRY.backoff_s)


@pytest.mark.parametrize("start", ["1577836800", "01/02/2013", "2013-13-01"])
def test_the_start_date_is_iso_only(clean_env: pytest.MonkeyPatch, start: str) -> None:
    with pytest.raises(ValidationError, match="start"):
        RetrainSettings(start=start)
    assert RetrainSettings(start="2013-01-02").start == dt.date(2013, 1, 2)
