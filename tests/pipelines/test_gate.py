"""Pipeline units: the promotion gate (metric, margin, calibrated coverage, SPL vs ewma, each at
its boundary), flags and settings precedence, cron triggers and the one-run-at-a-time locks (a
file lock held by another process, a PostgreSQL advisory lock, lock paths keyed to the store)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import textwrap
import time
import zoneinfo
from pathlib import Path

import pytest

from forecaster.config import ModelConfig
from pipelines import lock as lock_module
from pipelines.lock import (
    LockTarget,
    database_url,
    lock_key,
    lock_target,
    pipeline_lock,
    shared_lock_dir,
    store_key,
)
from pipelines.promote import RULE_CHAMPION, RULE_COVERAGE, RULE_NAIVE, RULE_SPL, GateRules, decide
from pipelines.schedule import cron_trigger
from pipelines.settings import RetrainSettings, load_settings

Metrics = dict[str, dict[str, list[float]]]
CALIBRATED = {"coverage_50": 0.5, "coverage_80": 0.8, "coverage": 0.8}


def scores(
    model: list[float],
    naive: list[float] | None = None,
    metric: str = "mase",
    spl: float = 0.5,
    ewma_spl: float = 0.6,
    coverage: dict[str, float] | None = None,
) -> Metrics:
    """score()-shaped metrics: the model calibrated and better than ewma unless told otherwise."""
    steps = len(model)
    bands = {key: [value] * steps for key, value in (coverage or CALIBRATED).items()}
    return {
        "model": {metric: model, "spl": [spl] * steps, **bands},
        "naive": {metric: naive if naive is not None else [9.0] * steps},
        "ewma": {metric: [9.0] * steps, "spl": [ewma_spl] * steps},
    }


def rules(
    metric: str = "mase", margin: float = 0.0, coverage_tolerance: float = 0.03, require_spl_vs_ewma: bool = True
) -> GateRules:
    return GateRules(metric, margin, coverage_tolerance, require_spl_vs_ewma)


def test_gate_rules_come_from_the_settings(clean_env: pytest.MonkeyPatch) -> None:
    settings = RetrainSettings()
    gate = GateRules.from_settings(settings)
    assert (gate.metric, gate.margin) == (settings.metric, settings.margin)
    assert gate.coverage_tolerance == pytest.approx(0.03) and gate.require_spl_vs_ewma is True


# ---------------------------------------------------------------- the gate


def test_gate_promotes_first_model_that_beats_naive() -> None:
    decision = decide(scores([0.8, 0.9], [1.0, 1.0]), None, rules("mase", 0.0))
    assert decision.promote
    assert "no champion" in decision.reason
    assert decision.champion is None
    assert decision.challenger == pytest.approx(0.85) and decision.naive == pytest.approx(1.0)


@pytest.mark.parametrize("challenger", [[1.0, 1.0], [1.1, 1.2]])
def test_gate_rejects_model_not_beating_naive(challenger: list[float]) -> None:
    champion = scores([5.0, 5.0])  # even against a much worse champion
    decision = decide(scores(challenger, [1.0, 1.0]), champion, rules("mase", 0.0))
    assert not decision.promote
    assert "does not beat naive" in decision.reason


def test_gate_rejects_without_champion_when_not_beating_naive() -> None:
    decision = decide(scores([1.2], [1.0]), None, rules("mase", 0.0))
    assert not decision.promote and "naive" in decision.reason


@pytest.mark.parametrize(("challenger", "promote"), [(0.97, True), (0.985, False), (0.98, False), (1.0, False)])
def test_gate_needs_the_relative_margin_over_the_champion(challenger: float, promote: bool) -> None:
    """margin 2% over a champion at 1.0: strictly below 0.98 promotes."""
    decision = decide(scores([challenger]), scores([1.0]), rules("mase", 0.02))
    assert decision.promote is promote, decision.reason
    assert decision.champion == pytest.approx(1.0)
    if not promote:
        assert "does not beat champion" in decision.reason


def test_gate_with_zero_margin_needs_a_strict_improvement() -> None:
    assert not decide(scores([1.0]), scores([1.0]), rules("mase", 0.0)).promote
    assert decide(scores([0.999]), scores([1.0]), rules("mase", 0.0)).promote


def test_gate_compares_over_common_steps_when_champion_has_longer_horizon() -> None:
    # over the 3 common steps: challenger 1.0 < champion 1.2; over all 5 the champion would win (0.76)
    decision = decide(scores([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]), scores([1.2, 1.2, 1.2, 0.1, 0.1]), rules("mase", 0.0))
    assert decision.promote, decision.reason
    assert decision.champion == pytest.approx(1.2)


def test_gate_compares_over_common_steps_when_challenger_has_longer_horizon() -> None:
    # naive and challenger are cut to the champion's 3 steps too: over 5, the challenger (2.6)
    # would lose to naive (1.24) and to the champion
    challenger = scores([1.0, 1.0, 1.0, 5.0, 5.0], [2.0, 2.0, 2.0, 0.1, 0.1])
    decision = decide(challenger, scores([1.2, 1.2, 1.2]), rules("mase", 0.0))
    assert decision.promote, decision.reason
    assert decision.challenger == pytest.approx(1.0) and decision.naive == pytest.approx(2.0)


def test_gate_uses_the_configured_metric() -> None:
    challenger = scores([0.5], [1.0], metric="mae")
    challenger["model"]["mase"], challenger["naive"]["mase"] = [3.0], [1.0]
    assert decide(challenger, None, rules("mae", 0.0)).promote
    assert not decide(challenger, None, rules("mase", 0.0)).promote


@pytest.mark.parametrize(
    ("covered", "promote"),
    [(0.8, True), (0.77, True), (0.83, True), (0.769, False), (0.831, False), (0.5, False)],
)
def test_gate_needs_every_central_band_within_the_coverage_tolerance(covered: float, promote: bool) -> None:
    """80% band, tolerance 0.03: 0.77 and 0.83 are on the boundary and pass; a hair beyond fails."""
    challenger = scores([0.8], [1.0], coverage={"coverage_50": 0.5, "coverage_80": covered})
    decision = decide(challenger, None, rules())
    assert decision.promote is promote, decision.reason
    assert decision.coverage == {"50": pytest.approx(0.5), "80": pytest.approx(covered)}
    if not promote:
        assert decision.rule == RULE_COVERAGE
        assert "80% band covers" in decision.reason and "50% band" not in decision.reason


def test_gate_checks_the_narrow_bands_too_and_averages_coverage_over_the_horizon() -> None:
    challenger = scores([0.8, 0.8], [1.0, 1.0])
    challenger["model"]["coverage_50"] = [0.40, 0.55]  # mean 0.475: within 0.03 of 0.5
    assert decide(challenger, None, rules()).promote
    challenger["model"]["coverage_50"] = [0.40, 0.50]  # mean 0.45: off by 0.05
    decision = decide(challenger, None, rules())
    assert not decision.promote and decision.rule == RULE_COVERAGE and "50% band covers 0.450" in decision.reason


def test_gate_coverage_tolerance_is_configurable() -> None:
    challenger = scores([0.8], [1.0], coverage={"coverage_80": 0.7})
    assert not decide(challenger, None, rules(coverage_tolerance=0.05)).promote
    assert decide(challenger, None, rules(coverage_tolerance=0.1)).promote


@pytest.mark.parametrize(("spl", "promote"), [(0.59, True), (0.6, True), (0.6001, False)])
def test_gate_needs_spl_not_worse_than_ewma(spl: float, promote: bool) -> None:
    decision = decide(scores([0.8], [1.0], spl=spl, ewma_spl=0.6), None, rules())
    assert decision.promote is promote, decision.reason
    assert (decision.spl, decision.ewma_spl) == (pytest.approx(spl), pytest.approx(0.6))
    if not promote:
        assert decision.rule == RULE_SPL and "worse than ewma" in decision.reason


def test_gate_spl_rule_can_be_turned_off() -> None:
    assert decide(scores([0.8], [1.0], spl=0.9, ewma_spl=0.6), None, rules(require_spl_vs_ewma=False)).promote


def test_gate_rejects_when_ewma_has_no_spl_to_compare() -> None:
    challenger = scores([0.8], [1.0])
    del challenger["ewma"]
    decision = decide(challenger, None, rules())
    assert not decision.promote and decision.rule == RULE_SPL and "ewma has no holdout SPL" in decision.reason


def test_gate_names_the_first_rule_that_rejected() -> None:
    everything_wrong = scores([1.5], [1.0], spl=0.9, ewma_spl=0.6, coverage={"coverage_80": 0.5})
    assert decide(everything_wrong, scores([0.1]), rules()).rule == RULE_NAIVE
    calibrated_badly = scores([0.8], [1.0], spl=0.9, ewma_spl=0.6, coverage={"coverage_80": 0.5})
    assert decide(calibrated_badly, scores([0.1]), rules()).rule == RULE_COVERAGE
    worse_than_ewma = scores([0.8], [1.0], spl=0.9, ewma_spl=0.6)
    assert decide(worse_than_ewma, scores([0.1]), rules()).rule == RULE_SPL
    assert decide(scores([0.8], [1.0]), scores([0.1]), rules()).rule == RULE_CHAMPION
    assert decide(scores([0.8], [1.0]), scores([0.9]), rules()).rule == ""


def test_decision_record_holds_every_figure_and_the_rejecting_rule() -> None:
    decision = decide(scores([0.8], [1.0], spl=0.7, ewma_spl=0.6), scores([0.9]), rules())
    tags = decision.tags()
    assert tags["gate_promoted"] == "false" and tags["gate_rule"] == RULE_SPL
    assert tags["gate_reason"] == decision.reason
    assert (tags["gate_spl"], tags["gate_ewma_spl"]) == ("0.7", "0.6")
    assert tags["gate_coverage"] == "50=0.5000,80=0.8000" and tags["gate_coverage_tolerance"] == "0.03"
    assert (tags["gate_challenger"], tags["gate_champion"], tags["gate_naive"]) == ("0.8", "0.9", "1")
    assert decision.metrics() == {
        "gate_challenger_mase": pytest.approx(0.8),
        "gate_naive_mase": pytest.approx(1.0),
        "gate_champion_mase": pytest.approx(0.9),
        "gate_challenger_spl": pytest.approx(0.7),
        "gate_ewma_spl": pytest.approx(0.6),
        "gate_coverage_50": pytest.approx(0.5),
        "gate_coverage_80": pytest.approx(0.8),
    }
    promoted = decide(scores([0.8], [1.0]), None, rules())
    assert promoted.tags()["gate_rule"] == "" and "gate_champion_mase" not in promoted.metrics()
    assert "coverage 50%=0.500 80%=0.800 within 0.030" in promoted.reason and "spl 0.5000 vs ewma" in promoted.reason


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
        load_settings(None, ["--epochs", "-1"])
    with pytest.raises(ValidationError, match="on_busy"):
        load_settings(None, ["--on-busy", "queue"])
    with pytest.raises(ForecasterError, match="missing.yaml': No such file or directory"):
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
    from pathlib import Path
    from pipelines.lock import LockTarget, pipeline_lock
    with pipeline_lock(sys.argv[1], LockTarget(path=Path(sys.argv[2])), timeout_s=0) as held:
        print("held" if held else "busy", flush=True)
        sys.stdin.read()  # hold until the test closes stdin
""")


def file_lock(path: Path) -> LockTarget:
    return LockTarget(path=path)


def test_file_lock_held_by_another_process_makes_a_run_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import retrain

    lock_file = tmp_path / "locks" / "retrain.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "m", str(lock_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pipeline_lock("m", file_lock(lock_file), timeout_s=0) as held:
            assert held is False
        started = time.monotonic()
        with pipeline_lock("m", file_lock(lock_file), timeout_s=0.3) as held:
            assert held is False, "a bounded wait gives up"
        assert time.monotonic() - started >= 0.3
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
    with pipeline_lock("m", file_lock(lock_file), timeout_s=0) as held:
        assert held is True, "the lock must die with its process"


def test_advisory_lock_second_connection_is_refused(postgres_user: str) -> None:
    url = f"postgresql://{postgres_user}@127.0.0.1:5432/postgres"
    name = f"gate-test-{dt.datetime.now().timestamp()}"
    target = LockTarget(database_url=url)
    with pipeline_lock(name, target, timeout_s=0) as first:
        assert first is True
        with pipeline_lock(name, target, timeout_s=0) as second:
            assert second is False
        started = time.monotonic()
        with pipeline_lock(name, target, timeout_s=0.5) as waited:
            assert waited is False, "a bounded wait gives up"
        assert 0.5 <= time.monotonic() - started < 10
        with pipeline_lock(name + "-other", target, timeout_s=0) as other_model:
            assert other_model is True, "models lock independently"
    with pipeline_lock(name, target, timeout_s=0) as again:
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


def test_lock_target_is_the_database_whenever_there_is_one(tmp_path: Path) -> None:
    pg_store = "postgresql+psycopg2://u:secret@h:5432/mlflow"
    assert lock_target("m", pg_store, None, None) == LockTarget(database_url="postgresql://u:secret@h:5432/mlflow")
    assert lock_target("m", "http://mlflow:5000", "postgresql://x@h/db", str(tmp_path / "f.lock")).database_url
    assert "secret" not in lock_target("m", pg_store, None, None).describe()


def test_sqlite_lock_file_sits_beside_the_database_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "store" / "mlflow.db"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    from_a = lock_target("m", f"sqlite:///{db}", None, None).path
    monkeypatch.chdir(tmp_path / "b")
    from_b = lock_target("m", f"sqlite:///{db}", None, None).path
    relative = lock_target("m", "sqlite:///../store/mlflow.db", None, None).path  # the same file, from b
    assert from_a == from_b == relative == tmp_path / "store" / "mlflow.db.retrain-m.lock"
    assert lock_target("other", f"sqlite:///{db}", None, None).path != from_a, "models lock independently"
    assert lock_target("a/b c", f"sqlite:///{db}", None, None).path == db.with_name("mlflow.db.retrain-a_b_c.lock")


def test_server_and_file_store_locks_live_in_the_lock_dir_keyed_by_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locks = str(tmp_path / "locks")
    server = lock_target("m", "http://user:pw@mlflow:5000", None, None, locks).path
    assert server is not None and server.parent == tmp_path / "locks" and server.name.startswith("retrain-m-")
    assert lock_target("m", "http://user:other@mlflow:5000/", None, None, locks).path == server, "password-free key"
    assert lock_target("m", "http://mlflow2:5000", None, None, locks).path != server
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    file_store = lock_target("m", "../mlruns", None, None, locks).path
    assert file_store == lock_target("m", (tmp_path / "mlruns").as_uri(), None, None, locks).path
    assert file_store is not None and file_store.parent == tmp_path / "locks"


def test_the_default_lock_dir_is_machine_wide_not_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone-else")
    monkeypatch.setenv("XDG_STATE_HOME", "/elsewhere")
    path = lock_target("m", "http://mlflow:5000", None, None).path
    assert path is not None and path.parent == shared_lock_dir()


@pytest.fixture()
def resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """Host lookups answered from a table (no DNS in tests): this machine is 'box' at 10.0.0.9."""
    table = {
        "localhost": ["127.0.0.1", "::1"],
        "box": ["10.0.0.9"],
        socket.gethostname(): ["10.0.0.9"],
        "mlflow": ["10.0.0.5"],
        "mlflow.internal": ["10.0.0.5"],
    }
    monkeypatch.setattr(lock_module, "_lookup", lambda host: table.get(host, []) if not _is_ip(host) else [host])


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    "spelling",
    [
        "http://127.0.0.1:5000",
        "http://localhost:5000",
        "HTTP://127.0.0.1:5000",
        "http://LOCALHOST:5000/",
        "http://box:5000",
        "http://10.0.0.9:5000",
        "http://user:secret@localhost:5000",
    ],
)
def test_every_spelling_of_one_tracking_server_is_one_lock(resolver: None, spelling: str, tmp_path: Path) -> None:
    reference = lock_target("m", "http://127.0.0.1:5000", None, None, str(tmp_path)).path
    assert lock_target("m", spelling, None, None, str(tmp_path)).path == reference


def test_default_ports_names_and_their_address_are_one_store_and_other_servers_are_not(resolver: None) -> None:
    assert store_key("http://mlflow") == store_key("http://mlflow:80") == store_key("http://10.0.0.5:80/")
    assert store_key("https://mlflow.internal") == store_key("https://mlflow:443") == "https://10.0.0.5:443"
    assert store_key("http://mlflow:5000") != store_key("http://mlflow:5001")
    assert store_key("http://mlflow:5000") != store_key("https://mlflow:5000")
    assert store_key("http://unknown-host:5000") == "http://unknown-host:5000"  # unresolved: the name itself
    assert "secret" not in store_key("http://u:secret@mlflow:5000")


def test_a_host_that_does_not_resolve_in_time_keys_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    release = threading.Event()

    def stuck(*args: object, **kwargs: object) -> object:
        release.wait(30)
        raise OSError("gave up")

    monkeypatch.setattr(lock_module, "RESOLVE_TIMEOUT_S", 0.05)
    monkeypatch.setattr(lock_module.socket, "getaddrinfo", stuck)
    try:
        assert store_key("http://Slow-Host:5000") == "http://slow-host:5000"
    finally:
        release.set()


AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.skipif(not AS_ROOT, reason="needs root to run a process as another user")
def test_another_user_on_the_machine_meets_the_same_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import tempfile

    runner = shutil.which("setpriv")
    if runner is None:
        pytest.skip("setpriv is not installed")
    top = Path(tempfile.mkdtemp(prefix="forecaster-lock-test-"))  # pytest's tmp_path is private to root
    top.chmod(0o755)
    folder = top / "shared-locks"
    monkeypatch.setattr(lock_module, "shared_lock_dir", lambda: folder)
    target = lock_target("m", "http://127.0.0.1:5000", None, None)
    assert target.path is not None
    probe = (
        "import sys; from filelock import FileLock, Timeout\n"
        "try:\n    FileLock(sys.argv[1]).acquire(timeout=0); print('acquired')\n"
        "except Timeout:\n    print('held')\n"
    )
    with pipeline_lock("m", target, timeout_s=0) as held:
        assert held
        assert oct(folder.stat().st_mode & 0o7777) == oct(0o1777) and target.path.stat().st_mode & 0o666 == 0o666
        other = subprocess.run(
            [runner, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", probe, str(target.path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    shutil.rmtree(top)
    assert other.stdout.strip() == "held", other.stderr


def test_lock_file_setting_overrides_the_derived_path(tmp_path: Path) -> None:
    target = lock_target("m", f"sqlite:///{tmp_path / 'mlflow.db'}", None, str(tmp_path / "x" / "my.lock"))
    assert target == LockTarget(path=tmp_path / "x" / "my.lock")


def test_scheduler_runs_once_at_start_when_asked_even_if_the_cron_is_far_away() -> None:
    from pipelines.schedule import run_on_schedule

    fired: list[dt.datetime] = []
    # once a year: only run_on_start can fire it within this test
    runs = run_on_schedule(lambda: fired.append(dt.datetime.now()), "0 0 1 1 *", "UTC", max_runs=1, run_on_start=True)
    assert runs == 1
    assert len(fired) == 1
