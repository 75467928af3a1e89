"""Pipeline units: the promotion gate, flags and settings precedence, cron triggers and the
one-run-at-a-time locks (a file lock held by another process, a PostgreSQL advisory lock)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import zoneinfo
from pathlib import Path

import pytest

from forecaster.config import ModelConfig
from pipelines.lock import database_url, lock_key, pipeline_lock
from pipelines.promote import decide
from pipelines.schedule import cron_trigger
from pipelines.settings import RetrainSettings, load_settings

Metrics = dict[str, dict[str, list[float]]]


def scores(model: list[float], naive: list[float] | None = None, metric: str = "mase") -> Metrics:
    return {"model": {metric: model}, "naive": {metric: naive if naive is not None else [9.0] * len(model)}}


# ---------------------------------------------------------------- the gate


def test_gate_promotes_first_model_that_beats_naive() -> None:
    decision = decide(scores([0.8, 0.9], [1.0, 1.0]), None, "mase", margin=0.0)
    assert decision.promote
    assert "no champion" in decision.reason
    assert decision.champion is None
    assert decision.challenger == pytest.approx(0.85) and decision.naive == pytest.approx(1.0)


@pytest.mark.parametrize("challenger", [[1.0, 1.0], [1.1, 1.2]])
def test_gate_rejects_model_not_beating_naive(challenger: list[float]) -> None:
    champion = scores([5.0, 5.0])  # even against a much worse champion
    decision = decide(scores(challenger, [1.0, 1.0]), champion, "mase", margin=0.0)
    assert not decision.promote
    assert "does not beat naive" in decision.reason


def test_gate_rejects_without_champion_when_not_beating_naive() -> None:
    decision = decide(scores([1.2], [1.0]), None, "mase", margin=0.0)
    assert not decision.promote and "naive" in decision.reason


@pytest.mark.parametrize(("challenger", "promote"), [(0.97, True), (0.985, False), (0.98, False), (1.0, False)])
def test_gate_needs_the_relative_margin_over_the_champion(challenger: float, promote: bool) -> None:
    """margin 2% over a champion at 1.0: strictly below 0.98 promotes."""
    decision = decide(scores([challenger]), scores([1.0]), "mase", margin=0.02)
    assert decision.promote is promote, decision.reason
    assert decision.champion == pytest.approx(1.0)
    if not promote:
        assert "does not beat champion" in decision.reason


def test_gate_with_zero_margin_needs_a_strict_improvement() -> None:
    assert not decide(scores([1.0]), scores([1.0]), "mase", margin=0.0).promote
    assert decide(scores([0.999]), scores([1.0]), "mase", margin=0.0).promote


def test_gate_compares_over_common_steps_when_champion_has_longer_horizon() -> None:
    # over the 3 common steps: challenger 1.0 < champion 1.2; over all 5 the champion would win (0.76)
    decision = decide(scores([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]), scores([1.2, 1.2, 1.2, 0.1, 0.1]), "mase", 0.0)
    assert decision.promote, decision.reason
    assert decision.champion == pytest.approx(1.2)


def test_gate_compares_over_common_steps_when_challenger_has_longer_horizon() -> None:
    # naive and challenger are cut to the champion's 3 steps too: over 5, the challenger (2.6)
    # would lose to naive (1.24) and to the champion
    challenger = scores([1.0, 1.0, 1.0, 5.0, 5.0], [2.0, 2.0, 2.0, 0.1, 0.1])
    decision = decide(challenger, scores([1.2, 1.2, 1.2]), "mase", 0.0)
    assert decision.promote, decision.reason
    assert decision.challenger == pytest.approx(1.0) and decision.naive == pytest.approx(2.0)


def test_gate_uses_the_configured_metric() -> None:
    challenger = {"model": {"mae": [0.5], "mase": [3.0]}, "naive": {"mae": [1.0], "mase": [1.0]}}
    assert decide(challenger, None, "mae", 0.0).promote
    assert not decide(challenger, None, "mase", 0.0).promote


# ---------------------------------------------------------------- flags and settings


def test_flags_accept_both_forms_dashes_shortcuts_and_dotted_names(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(
        None,
        ["--epochs", "5", "--margin=0.1", "--model-name", "m", "--on-busy=wait", "--training.model.hidden-size", "12"],
    )
    assert settings.training.train.epochs == 5
    assert settings.margin == pytest.approx(0.1)
    assert (settings.model_name, settings.on_busy, settings.training.model.hidden_size) == ("m", "wait", 12)


def test_flags_reject_unknown_flag_naming_it(clean_env: pytest.MonkeyPatch) -> None:
    from forecaster.errors import ForecasterError

    with pytest.raises(ForecasterError, match="--epoch"):
        load_settings(None, ["--epochs", "5", "--epoch", "3"])
    with pytest.raises(ForecasterError, match="--training.model.hidden"):
        load_settings(None, ["--training.model.hidden", "3"])


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for key in list(os.environ):
        if key.startswith("FORECASTER_RETRAIN_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_settings_precedence_yaml_then_env_then_flags(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    config = tmp_path / "retrain.yaml"
    config.write_text("epochs: 5\nlr: 0.1\nhidden: 8\nmodel-name: from-yaml\ntickers: [A, B]\n")
    clean_env.setenv("FORECASTER_RETRAIN_EPOCHS", "7")
    clean_env.setenv("FORECASTER_RETRAIN_LR", "0.01")
    clean_env.setenv("FORECASTER_RETRAIN_TICKERS", "AAPL,IBM")  # commas, like the flag
    clean_env.setenv("FORECASTER_RETRAIN_TRAINING__MODEL__DROPOUT", "0.3")  # nested names
    settings = load_settings(config, ["--epochs", "9"])
    training = settings.training
    assert training.train.epochs == 9  # flag beats env and yaml
    assert training.train.lr == pytest.approx(0.01)  # env beats yaml
    assert training.model.hidden_size == 8  # yaml beats the default
    assert training.model.dropout == pytest.approx(0.3)
    assert settings.model_name == "from-yaml"  # dashed yaml keys work
    assert settings.tickers == ["AAPL", "IBM"]  # env beats yaml
    assert load_settings(config, ["--tickers", "X,Y,Z"]).tickers == ["X", "Y", "Z"]
    assert training.model.num_layers == ModelConfig().num_layers


def test_settings_reject_bad_values_and_missing_config(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from forecaster.errors import ForecasterError

    with pytest.raises(ValidationError, match="epochs"):
        load_settings(None, ["--epochs", "0"])
    with pytest.raises(ValidationError, match="on_busy"):
        load_settings(None, ["--on-busy", "queue"])
    with pytest.raises(ForecasterError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")


def test_shipped_retrain_yaml_is_valid(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(Path(__file__).resolve().parents[2] / "pipelines" / "retrain.yaml")
    assert settings.schedule and cron_trigger(settings.schedule, settings.timezone)


# ---------------------------------------------------------------- cron

NY = zoneinfo.ZoneInfo("America/New_York")


def next_fire(expression: str, after: dt.datetime, timezone: str = "America/New_York") -> dt.datetime:
    trigger = cron_trigger(expression, timezone)
    fire = trigger.get_next_fire_time(None, after)
    assert fire is not None
    return fire


def test_cron_five_fields_weekdays_after_the_close() -> None:
    friday_evening = dt.datetime(2026, 11, 20, 19, 0, tzinfo=NY)
    fire = next_fire("30 18 * * 1-5", friday_evening)
    assert (fire.strftime("%a"), fire.hour, fire.minute, fire.second) == ("Mon", 18, 30, 0)
    thursday_noon = dt.datetime(2026, 11, 19, 12, 0, tzinfo=NY)
    assert next_fire("30 18 * * 1-5", thursday_noon) == dt.datetime(2026, 11, 19, 18, 30, tzinfo=NY)


@pytest.mark.parametrize(
    ("weekdays", "expected"), [("0", "Sun"), ("7", "Sun"), ("6", "Sat"), ("sun", "Sun"), ("5-7", "Fri"), ("0,3", "Wed")]
)
def test_cron_weekdays_use_crontab_numbering(weekdays: str, expected: str) -> None:
    monday = dt.datetime(2026, 11, 23, 12, 0, tzinfo=NY)
    assert next_fire(f"0 9 * * {weekdays}", monday).strftime("%a") == expected


def test_cron_six_fields_have_seconds_first() -> None:
    start = dt.datetime(2026, 11, 23, 12, 0, 1, tzinfo=dt.UTC)
    fire = next_fire("*/2 * * * * *", start, "UTC")
    assert fire == dt.datetime(2026, 11, 23, 12, 0, 2, tzinfo=dt.UTC)
    assert next_fire("15 30 18 * * 1-5", start, "UTC") == dt.datetime(2026, 11, 23, 18, 30, 15, tzinfo=dt.UTC)


@pytest.mark.parametrize("expression", ["* * *", "* * * * * * *", "", "61 * * * *", "* * * * 9", "a b c d e"])
def test_cron_rejects_bad_expressions(expression: str) -> None:
    with pytest.raises(ValueError):
        cron_trigger(expression, "UTC")


def test_cron_error_names_the_field_count() -> None:
    with pytest.raises(ValueError, match=r"5 \(or 6\) fields, got '\* \* \*'"):
        cron_trigger("* * *", "UTC")


# ---------------------------------------------------------------- locks

HOLDER = textwrap.dedent("""
    import sys
    from pipelines.lock import pipeline_lock
    with pipeline_lock(sys.argv[1], None, sys.argv[2], wait=False) as held:
        print("held" if held else "busy", flush=True)
        sys.stdin.read()  # hold until the test closes stdin
""")


def test_file_lock_held_by_another_process_makes_a_run_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import retrain

    lock_file = tmp_path / "locks" / "retrain.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "m", str(lock_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pipeline_lock("m", None, str(lock_file), wait=False) as held:
            assert held is False
        # the whole run: skipped without training (on_busy=skip)
        monkeypatch.setattr(retrain, "run_once", lambda s: pytest.fail("a skipped run must not train"))
        monkeypatch.setattr(retrain.tracking, "configure", lambda uri: uri)  # no global MLflow state
        settings = RetrainSettings(
            model_name="m", lock_file=str(lock_file), on_busy="skip", tracking_uri="http://127.0.0.1:9"
        )
        assert retrain.run_locked(settings) is None
    finally:
        holder.stdin.close()  # type: ignore[union-attr]
        holder.wait(timeout=30)
    with pipeline_lock("m", None, str(lock_file), wait=False) as held:
        assert held is True, "the lock must die with its process"


def test_advisory_lock_second_connection_is_refused(postgres_user: str) -> None:
    url = f"postgresql://{postgres_user}@127.0.0.1:5432/postgres"
    name = f"gate-test-{dt.datetime.now().timestamp()}"
    with pipeline_lock(name, url, "unused.lock", wait=False) as first:
        assert first is True
        with pipeline_lock(name, url, "unused.lock", wait=False) as second:
            assert second is False
        with pipeline_lock(name + "-other", url, "unused.lock", wait=False) as other_model:
            assert other_model is True, "models lock independently"
    with pipeline_lock(name, url, "unused.lock", wait=False) as again:
        assert again is True, "released when the holder's block ends"


def test_advisory_lock_key_is_stable_31_bit() -> None:
    assert lock_key("forecaster") == lock_key("forecaster")
    assert lock_key("a") != lock_key("b")
    assert 0 <= lock_key("forecaster") < 2**31


def test_lock_database_defaults_to_a_postgres_tracking_store() -> None:
    assert database_url("postgresql://x@h/db", "sqlite:///m.db") == "postgresql://x@h/db"
    assert database_url(None, "postgresql+psycopg2://u@h:5432/mlflow") == "postgresql://u@h:5432/mlflow"
    assert database_url(None, "http://mlflow:5000") is None
    assert database_url(None, None) is None


def test_scheduler_runs_once_at_start_when_asked_even_if_the_cron_is_far_away() -> None:
    from pipelines.schedule import run_on_schedule

    fired: list[dt.datetime] = []
    # once a year: only run_on_start can fire it within this test
    runs = run_on_schedule(lambda: fired.append(dt.datetime.now()), "0 0 1 1 *", "UTC", max_runs=1, run_on_start=True)
    assert runs == 1
    assert len(fired) == 1
