"""One owner per setting: every hyperparameter is declared once in forecaster.config and is
settable by its dotted name from `forecaster train` (flag, YAML), `forecaster retrain` (YAML
`training:` block, environment, flag) and the tests, with one validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from forecaster.config import ENCODER_STEPS, SHORTCUTS, DataConfig, ModelConfig, TrainConfig, TrainingConfig, describe
from forecaster.interface.cli import app
from pipelines.settings import load_settings

# A setting with no shortcut flag and no mention outside config.py and the fit loop that reads it:
# what adding a new hyperparameter looks like.
SETTING, VALUE = "train.min_lr_ratio", 0.25


def resolved(config: TrainingConfig) -> float:
    return config.train.min_lr_ratio


def train_print_config(*args: str) -> TrainingConfig:
    result = CliRunner().invoke(app, ["train", "--print-config", *args])
    assert result.exit_code == 0, result.output
    return TrainingConfig.model_validate(yaml.safe_load(result.stdout))


def test_a_setting_is_settable_through_every_route(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    assert resolved(TrainingConfig()) != VALUE
    # tests
    assert resolved(TrainingConfig().with_overrides({SETTING: VALUE})) == VALUE
    # forecaster train: dotted flag, both spellings, and a YAML file
    assert resolved(train_print_config("--train.min-lr-ratio", str(VALUE))) == VALUE
    assert resolved(train_print_config(f"--train.min-lr-ratio={VALUE}")) == VALUE
    config_file = tmp_path / "train.yaml"
    config_file.write_text(f"train:\n  min_lr_ratio: {VALUE}\n")
    assert resolved(train_print_config("--config", str(config_file))) == VALUE
    # forecaster retrain: YAML training block, environment, flag
    retrain_yaml = tmp_path / "retrain.yaml"
    retrain_yaml.write_text(f"training:\n  train:\n    min_lr_ratio: {VALUE}\n")
    assert resolved(load_settings(retrain_yaml).training) == VALUE
    clean_env.setenv("FORECASTER_RETRAIN_TRAINING__TRAIN__MIN_LR_RATIO", str(VALUE))
    assert resolved(load_settings().training) == VALUE
    clean_env.delenv("FORECASTER_RETRAIN_TRAINING__TRAIN__MIN_LR_RATIO")
    assert resolved(load_settings(None, ["--training.train.min-lr-ratio", str(VALUE)]).training) == VALUE


def test_train_precedence_is_shortcut_then_dotted_flag_then_file_then_default(tmp_path: Path) -> None:
    config_file = tmp_path / "train.yaml"
    config_file.write_text("data:\n  lookback: 30\n  horizon: 4\nmodel:\n  hidden_size: 16\n")
    config = train_print_config("--config", str(config_file), "--data.lookback", "40", "--lookback", "50")
    assert config.data.lookback == 50  # the shortcut flag wins
    assert config.data.horizon == 4  # the file beats the default
    assert config.model.hidden_size == 16
    assert config.model.num_layers == ModelConfig().num_layers


def test_one_validation_for_every_route(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="lookback"):
        TrainingConfig().with_overrides({"data.lookback": 1})
    result = CliRunner().invoke(app, ["train", "--print-config", "--data.lookback", "1"])
    assert result.exit_code == 2 and "data.lookback" in result.output and "greater than or equal to 3" in result.output
    with pytest.raises(ValidationError, match="lookback"):
        load_settings(None, ["--lookback", "1"])


def test_unknown_settings_are_named(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown setting 'train.lrr'"):
        TrainingConfig().with_overrides({"train.lrr": 1})
    result = CliRunner().invoke(app, ["train", "--print-config", "--train.lrr", "1"])
    assert result.exit_code == 2 and "--train.lrr" in result.output


def test_derived_values_are_not_settings() -> None:
    names = {name for name, _, _ in describe(TrainingConfig)}
    assert "data.horizon" in names
    assert not {"model.horizon", "model.n_features", "data.features", "model.median_index"} & names
    assert ModelConfig(quantiles=(0.05, 0.5, 0.95)).median_index == 1


def test_the_encoder_reads_its_default_bars_within_the_lookback_unless_seq_len_is_set() -> None:
    assert DataConfig().encoder_steps == ENCODER_STEPS < DataConfig().lookback
    assert DataConfig(lookback=ENCODER_STEPS).encoder_steps == ENCODER_STEPS - 1  # never the whole window
    assert DataConfig(lookback=3).encoder_steps == 2
    assert DataConfig(seq_len=60).encoder_steps == 60
    with pytest.raises(ValidationError, match="seq_len"):
        DataConfig(lookback=30, seq_len=30)


def test_every_shortcut_names_a_real_setting_and_every_default_is_declared_once() -> None:
    names = {name for name, _, _ in describe(TrainingConfig)}
    assert set(SHORTCUTS.values()) <= names
    for block, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
        assert getattr(TrainingConfig(), block) == cls()


def test_print_config_round_trips(tmp_path: Path) -> None:
    config = train_print_config("--epochs", "3", "--quantiles", "0.05,0.5,0.95")
    config_file = tmp_path / "printed.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert train_print_config("--config", str(config_file)) == config
    assert config.model.quantiles == (0.05, 0.5, 0.95)


def test_quantile_levels_are_validated_once() -> None:
    with pytest.raises(ValidationError, match="median 0.5"):
        ModelConfig(quantiles=(0.1, 0.9))
    with pytest.raises(ValidationError, match="increasing"):
        ModelConfig(quantiles=(0.5, 0.1))
    with pytest.raises(ValidationError, match="bidirectional"):
        ModelConfig(bidirectional=True, mode="seq2seq")


def test_min_rows_is_lookback_plus_horizon() -> None:
    assert DataConfig(lookback=30, horizon=4).min_rows == 34
