"""`forecaster retrain` names the model `--model`, as every other command does; `--model-name`
(the setting's own flag) still works but is not listed."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from forecaster.interface.cli import app
from pipelines.settings import load_settings, setting_hint


@pytest.mark.parametrize("flags", [["--model", "m"], ["--model=m"], ["--model-name", "m"], ["--model-name=m"]])
def test_retrain_takes_model_or_the_old_model_name(clean_env: pytest.MonkeyPatch, flags: list[str]) -> None:
    assert load_settings(None, [*flags, "--epochs", "2"]).model_name == "m"


def test_the_last_model_flag_wins_whichever_name_it_has(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings(None, ["--model-name", "old", "--model", "new"]).model_name == "new"
    assert load_settings(None, ["--model", "new", "--model-name", "old"]).model_name == "old"


def test_retrain_help_lists_model_not_model_name(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TERMINAL_WIDTH", "200")
    result = CliRunner().invoke(app, ["retrain", "--help"])
    assert result.exit_code == 0, result.output
    assert "--model  registered model the pipeline trains" in result.output
    assert "--model-name" not in result.output


def test_print_config_reads_the_model_flag(clean_env: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(app, ["retrain", "--model", "prices", "--print-config"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["model_name"] == "prices"


def test_hints_name_the_model_flag() -> None:
    assert "flag --model prices" in setting_hint("model_name", "prices")
