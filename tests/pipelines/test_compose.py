"""The production topology as files: docker-compose.yml, its GPU overlay, the Dockerfiles and
the env file wire PostgreSQL -> MLflow -> (api, scheduler) consistently with the code's settings,
with credentials only in the (git-ignored) env file.

Compose values are checked as compose would run them: ``${VAR}`` references filled in from the
committed example env file, as `docker compose` fills them in from ``.env``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("postgres", "mlflow", "api", "scheduler", "lb")
ENV_EXAMPLE = ROOT / "deploy" / "forecaster.env.example"
MLFLOW_DOCKERFILE = ROOT / "deploy" / "mlflow.Dockerfile"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
# ${VAR}, ${VAR:?message}, ${VAR?message}, ${VAR:-default}, ${VAR-default}; $$ is a literal $
REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[?-])(?P<arg>[^}]*))?\}")


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / name).read_text())
    assert isinstance(data, dict), f"{name} must hold a mapping"
    return data


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file; comments and blank lines skipped."""
    pairs = [line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution over a parsed compose file; a required variable that
    `env` lacks fails the test naming it."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(found: re.Match[str]) -> str:
        name, op, arg = found.group("name"), found.group("op"), found.group("arg")
        if op and op.endswith("?"):
            assert name in env, f"${{{name}}} is required ({arg}) but the example env file lacks it"
        if name in env and not (op == ":-" and env[name] == ""):
            return env[name]
        return arg if op and op.endswith("-") else ""

    parts = value.split("$$")  # a literal $ is never a reference
    return "$".join(REFERENCE.sub(substitute, part) for part in parts)


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(example_env: dict[str, str]) -> dict[str, Any]:
    return interpolate(load("docker-compose.yml"), example_env)


def command_text(service: dict[str, Any]) -> str:
    command = service["command"]
    return " ".join(command) if isinstance(command, list) else str(command)


def option(command: str, name: str) -> str:
    """The value after `--name` in a command line (`--name value` or `--name=value`)."""
    found = re.search(rf"{re.escape(name)}(?:=|\s+)(\S+)", command)
    assert found, f"'{name}' missing from: {command}"
    return found.group(1).strip("\"'")


def environment(service: dict[str, Any], example_env: dict[str, str] | None = None) -> dict[str, str]:
    """The service's environment: its env_file (the example standing in for .env) under `environment`."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    from_file = example_env if example_env is not None and env_files(service) else {}
    return {**from_file, **{k: str(v) for k, v in env.items()}}


def env_files(service: dict[str, Any]) -> list[str]:
    files = service.get("env_file", [])
    files = [files] if isinstance(files, str | dict) else files
    return [f["path"] if isinstance(f, dict) else str(f) for f in files]


def named_volumes(service: dict[str, Any]) -> list[str]:
    """Sources of `name:/path` (or long-syntax type: volume) mounts; bind mounts are paths."""
    names = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "volume" and volume.get("source"):
                names.append(volume["source"])
        elif ":" in str(volume) and not str(volume).startswith((".", "/", "~", "$")):
            names.append(str(volume).split(":", 1)[0])
    return names


def test_compose_declares_the_five_services(compose: dict[str, Any]) -> None:
    assert set(SERVICES) <= set(compose["services"])


def test_mlflow_server_uses_postgres_backend_and_proxied_artifacts(
    compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    mlflow = compose["services"]["mlflow"]
    command = command_text(mlflow)
    assert "mlflow server" in command
    # `mlflow server` reads --backend-store-uri from MLFLOW_BACKEND_STORE_URI
    store = environment(mlflow).get("MLFLOW_BACKEND_STORE_URI") or option(command, "--backend-store-uri")
    backend = urlparse(store)
    assert backend.scheme in ("postgresql", "postgresql+psycopg2", "postgres")
    assert backend.hostname == "postgres", "the backend store must be the compose postgres service"
    postgres_env = environment(compose["services"]["postgres"], example_env)
    assert backend.username == postgres_env["POSTGRES_USER"]
    assert backend.password == postgres_env["POSTGRES_PASSWORD"]
    assert backend.path.lstrip("/") == postgres_env["POSTGRES_DB"]
    assert re.search(r"--serve-artifacts(\s|$)", command)
    destination = option(command, "--artifacts-destination")
    mounts = [str(v).split(":")[1] for v in mlflow.get("volumes", []) if ":" in str(v)]
    assert destination in mounts, f"artifacts at {destination} would not survive a restart: mounts {mounts}"
    allowed = option(command, "--allowed-hosts").split(",")
    assert "mlflow" in allowed and "mlflow:5000" in allowed, allowed
    assert option(command, "--host") == "0.0.0.0"
    assert option(command, "--port") == "5000"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {name for service in compose["services"].values() for name in named_volumes(service)}
    assert used, "expected named volumes (pgdata, mlartifacts, data)"
    assert used <= declared, f"undeclared named volumes: {sorted(used - declared)}"
    assert "pgdata" in named_volumes(compose["services"]["postgres"])


def test_published_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "5000:5000" in [str(p) for p in services["mlflow"]["ports"]]
    assert option(command_text(services["mlflow"]), "--port") == "5000"
    assert "8000:8000" in [str(p) for p in services["lb"]["ports"]], "the API is published by the load balancer"
    assert re.search(r"^\s*listen\s+8000;", NGINX_CONF.read_text(), re.M), "nginx must listen on the published port"
    # replicas publish nothing: two of them could not bind the same host port
    assert "ports" not in services["api"], "api replicas are reached through lb only"


def nginx_blocks(text: str, kind: str) -> dict[str, str]:
    """`kind name { ... }` blocks of an nginx config (no nested braces inside), by name."""
    return {m.group(1): m.group(2) for m in re.finditer(rf"\b{kind}\s+(\S+)\s*\{{([^{{}}]*)\}}", text)}


def test_api_runs_as_replicas_behind_the_nginx_load_balancer(compose: dict[str, Any]) -> None:
    services = compose["services"]
    api, lb = services["api"], services["lb"]
    assert api["deploy"]["replicas"] >= 2
    assert "container_name" not in api, "a fixed container name forbids replicas"
    assert re.fullmatch(r"nginx:1\.27(\.\d+)?-alpine", lb["image"]), lb["image"]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in lb["volumes"]}
    assert (ROOT / mounts["/etc/nginx/nginx.conf"]).resolve() == NGINX_CONF
    assert "api" in lb["depends_on"]

    conf = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text())
    upstreams = nginx_blocks(conf, "upstream")
    [passed] = re.findall(r"proxy_pass\s+http://([\w.-]+)\s*;", conf)
    assert passed in upstreams, f"proxy_pass http://{passed} names no upstream"
    servers = re.findall(r"^\s*server\s+(\S+)([^;]*);", upstreams[passed], re.M)
    port = option(command_text(api), "--port")
    assert [address for address, _ in servers] == [f"api:{port}"], "the upstream is the api service by name"
    params = servers[0][1]
    assert re.search(r"\bmax_fails=\d+", params) and re.search(r"\bfail_timeout=\d+s", params), params
    assert re.search(r"\bresolve\b", params) and re.search(r"^\s*resolver\s+127\.0\.0\.11\b", conf, re.M), (
        "replicas added by --scale are found by re-resolving the service name"
    )
    assert "zone" in upstreams[passed], "`resolve` needs a shared-memory zone"


def test_lb_healthcheck_reaches_a_replica_through_the_proxy(compose: dict[str, Any]) -> None:
    check = " ".join(compose["services"]["lb"]["healthcheck"]["test"])
    assert re.search(r"(localhost|127\.0\.0\.1):8000/health\b", check), check


def test_api_replicas_are_stateless(compose: dict[str, Any]) -> None:
    """Nothing a replica serves lives only in it: models come from the registry by alias, and the
    one volume it mounts is the shared yfinance cache (written atomically by any replica)."""
    api = compose["services"]["api"]
    assert named_volumes(api) == ["data"]
    env = environment(api)
    assert env["MLFLOW_TRACKING_URI"].startswith("http://mlflow:")
    assert env["FORECASTER_CACHE_DIR"].startswith("/data/")


def test_start_order_follows_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "scheduler"):
        depends = services[name]["depends_on"]
        assert "mlflow" in depends, f"{name} must start after mlflow"
        assert depends["mlflow"]["condition"] == "service_healthy", f"{name} must wait for a healthy mlflow"


def test_services_have_healthchecks_and_restart_policies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SERVICES:
        assert services[name].get("restart") in ("always", "unless-stopped", "on-failure"), name
    for name in ("postgres", "mlflow", "api", "lb"):  # waited on, or probed by the orchestrator
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"{name} needs a healthcheck"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "localhost:5000/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert re.search(r"localhost:8000/(health|ready)\b", api_check), api_check


def test_api_and_scheduler_reach_mlflow_by_service_name(compose: dict[str, Any]) -> None:
    port = option(command_text(compose["services"]["mlflow"]), "--port")
    for name in ("api", "scheduler"):
        env = environment(compose["services"][name])
        assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow:{port}", name


def test_scheduler_environment_builds_valid_retrain_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler's env + the mounted retrain.yaml are what `forecaster retrain` reads."""
    from pipelines.settings import load_settings

    scheduler = compose["services"]["scheduler"]
    command = scheduler["command"]
    assert command[:2] == ["forecaster", "retrain"]
    config = option(command_text(scheduler), "--config")
    mounted = {str(v).split(":")[1]: str(v).split(":")[0] for v in scheduler["volumes"] if ":" in str(v)}
    assert config in mounted, f"{config} is not mounted into the scheduler"
    for key, value in environment(scheduler).items():
        if key.startswith("FORECASTER_RETRAIN_"):
            monkeypatch.setenv(key, value)
    settings = load_settings(ROOT / mounted[config].removeprefix("./"))
    assert settings.source == "yfinance" and len(settings.tickers) >= 1
    # the documented form (A,B), read as the symbols it lists
    assert environment(scheduler)["FORECASTER_RETRAIN_TICKERS"] == ",".join(settings.tickers)
    assert settings.schedule, "the scheduler service needs a schedule in its config"
    lock = urlparse(settings.lock_database_url or "")
    assert lock.hostname == "postgres", "the advisory lock must live in the compose postgres"


def reads(settings: Any, prefix: str, key: str) -> bool:
    """Whether a settings class reads environment variable `key` (prefix, field name, nested
    sections with __; for the retrain settings also the flat shortcuts of `forecaster train`)."""
    from pydantic import BaseModel

    from forecaster.config import SHORTCUTS

    if not key.startswith(prefix):
        return False
    name, *nested = key.removeprefix(prefix).lower().split("__")
    if not nested and prefix == "FORECASTER_RETRAIN_" and name in SHORTCUTS:
        return True
    model = settings
    for part in [name, *nested]:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return False
        model = model.model_fields[part].annotation
    return True


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.gpu.yml"])
def test_every_forecaster_variable_is_read_by_the_service_it_is_given_to(
    name: str, example_env: dict[str, str]
) -> None:
    """A variable that no settings class reads is silently ignored (the service settings ignore
    unknown names): the api gets FORECASTER_* names of service/settings.py, the scheduler the
    FORECASTER_RETRAIN_* names of pipelines/settings.py, from the compose file and its env_file."""
    from pipelines.settings import ENV_PREFIX, RetrainSettings
    from service.settings import Settings

    services = interpolate(load(name), example_env)["services"]
    readers = {"api": (Settings, "FORECASTER_"), "scheduler": (RetrainSettings, ENV_PREFIX)}
    for service, (settings, prefix) in readers.items():
        env = environment(services[service], example_env | {"FORECASTER_API_KEY": "k"})
        ignored = [key for key in env if key.startswith("FORECASTER_") and not reads(settings, prefix, key)]
        if service == "api":  # Settings' prefix is a prefix of the retrain settings' too
            ignored += [key for key in env if key.startswith(ENV_PREFIX)]
        assert not ignored, f"{name}: {service} is given variables it never reads: {sorted(set(ignored))}"


def test_api_and_scheduler_share_the_yfinance_cache_and_the_model(compose: dict[str, Any]) -> None:
    """The scheduler trains and promotes the model the api serves, and both cache yfinance bars in
    one folder of the shared volume, as each resolves its settings."""
    from pipelines.settings import RetrainSettings
    from service.settings import Settings

    api, scheduler = (environment(compose["services"][name]) for name in ("api", "scheduler"))
    served = Settings(
        **{k.removeprefix("FORECASTER_").lower(): v for k, v in api.items() if k.startswith("FORECASTER_")}
    )
    trained = RetrainSettings(
        **{
            k.removeprefix("FORECASTER_RETRAIN_").lower(): v
            for k, v in scheduler.items()
            if k.startswith("FORECASTER_RETRAIN_")
        }
    )
    assert trained.yfinance_cache_dir == Path(served.cache_dir)
    assert trained.model_name == served.model_name
    assert named_volumes(compose["services"]["scheduler"]) == named_volumes(compose["services"]["api"]) == ["data"]
    assert served.cache_dir.startswith("/data/")


def test_api_environment_builds_valid_service_settings(compose: dict[str, Any]) -> None:
    from service.settings import Settings

    env = environment(compose["services"]["api"])
    settings = Settings(
        **{k.removeprefix("FORECASTER_").lower(): v for k, v in env.items() if k.startswith("FORECASTER_")}
    )
    assert settings.alias == "champion" and settings.poll_interval_s > 0


def test_dockerfile_installs_pinned_torch_before_the_project() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    runs = [line for line in lines if line.startswith("RUN ")]
    torch = [i for i, line in enumerate(runs) if re.search(r"pip install .*[\"']?torch==2\.13\.0\b", line)]
    project = [i for i, line in enumerate(runs) if re.search(r"pip install (\S+ )*\.(\s|$)", line)]
    assert torch, "the Dockerfile must `pip install torch==2.13.0`"
    assert project, "the Dockerfile must `pip install .`"
    assert torch[0] < project[0], "torch must be installed before the project"
    assert "--index-url" in shlex.split(runs[torch[0]])
    pyproject = (ROOT / "pyproject.toml").read_text()
    from packaging.specifiers import SpecifierSet

    spec = re.search(r'"torch([^"]*)"', pyproject)
    assert spec and "2.13.0" in SpecifierSet(spec.group(1)), "the pinned torch must satisfy pyproject's range"


def test_gpu_overlay_reserves_an_nvidia_device() -> None:
    gpu = load("docker-compose.gpu.yml")
    for name in ("api", "scheduler"):
        devices = gpu["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), name
        assert "cu" in gpu["services"][name]["build"]["args"]["TORCH_INDEX"]
    assert environment(gpu["services"]["api"])["FORECASTER_DEVICE"] == "cuda"
    assert environment(gpu["services"]["scheduler"])["FORECASTER_RETRAIN_DEVICE"] == "cuda"


# ---------------------------------------------------------------- credentials and images


def test_credentials_come_from_the_git_ignored_env_file(compose: dict[str, Any], example_env: dict[str, str]) -> None:
    services = compose["services"]
    assert env_files(services["postgres"]) == [".env"], "postgres reads its credentials from .env"
    assert ".env" in env_files(services["api"]), "the api reads FORECASTER_API_KEY from .env"
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= set(example_env)
    assert "POSTGRES_PASSWORD" not in environment(services["postgres"]), "not inline in the compose file"
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored or "/.env" in ignored, "the real .env must never be committed"


def test_compose_file_holds_no_password_literal(example_env: dict[str, str]) -> None:
    raw = load("docker-compose.yml")
    text = (ROOT / "docker-compose.yml").read_text()
    assert example_env["POSTGRES_PASSWORD"] not in text
    for name, service in raw["services"].items():
        env = service.get("environment", {})
        for key, value in env.items() if isinstance(env, dict) else []:
            if "PASSWORD" in key or "API_KEY" in key:
                assert str(value).startswith("${"), f"{name}: {key} is a literal"
    # every password inside a URL is a reference to the env file
    for found in re.finditer(r"://[^\s:/@\"']+:(?P<password>[^@\s\"']+)@", text):
        assert found.group("password").startswith("${POSTGRES_PASSWORD"), found.group(0)


def test_every_compose_variable_is_in_the_example_env_file(example_env: dict[str, str]) -> None:
    text = (ROOT / "docker-compose.yml").read_text().replace("$$", "")
    used = {found.group("name") for found in REFERENCE.finditer(text)}
    assert used, "credentials are expected as ${...} references"
    assert used <= set(example_env), f"missing from {ENV_EXAMPLE.name}: {sorted(used - set(example_env))}"


def pyproject_pin(package: str) -> str:
    """The tested version of `package`: its pin in constraints.txt (pyproject.toml holds ranges)."""
    found = re.search(rf"^{re.escape(package)}==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M | re.I)
    assert found, f"constraints.txt must pin {package}"
    return found.group(1)


def test_mlflow_is_built_once_from_the_official_image_with_its_driver(compose: dict[str, Any]) -> None:
    mlflow = compose["services"]["mlflow"]
    build = mlflow["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == MLFLOW_DOCKERFILE
    assert "pip install" not in command_text(mlflow), "nothing is installed at every start"
    dockerfile = MLFLOW_DOCKERFILE.read_text()
    images = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert images == [f"ghcr.io/mlflow/mlflow:v{pyproject_pin('mlflow')}"], images
    assert re.search(
        rf"^RUN pip install .*psycopg2-binary=={re.escape(pyproject_pin('psycopg2-binary'))}", dockerfile, re.M
    )
    assert pyproject_pin("mlflow") in mlflow["image"], "the built image is tagged with its MLflow version"


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build_context() -> None:
    ignored = {line.strip().strip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for entry in (".venv", "mlruns", ".forecaster", ".git", ".env", "**/__pycache__", ".pytest_cache"):
        assert entry in ignored, f".dockerignore must exclude {entry}"


def test_api_and_scheduler_write_and_score_one_ledger_in_its_own_postgres_database(
    compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    """The api writes the ledger and the scheduler scores it: one PostgreSQL URI, a database of its own
    (not MLflow's), made by the init script the postgres service mounts; the scheduler scores."""
    from pipelines.settings import RetrainSettings

    services = compose["services"]
    api, scheduler = environment(services["api"]), environment(services["scheduler"])
    uri = api["FORECASTER_LEDGER_URI"]
    assert scheduler["FORECASTER_RETRAIN_LEDGER_URI"] == uri
    ledger = urlparse(uri)
    mlflow_store = urlparse(environment(services["mlflow"])["MLFLOW_BACKEND_STORE_URI"])
    assert ledger.scheme == "postgresql" and ledger.hostname == "postgres" and ledger.port == 5432
    assert (ledger.username, ledger.password) == (example_env["POSTGRES_USER"], example_env["POSTGRES_PASSWORD"])
    database = ledger.path.lstrip("/")
    assert database and database != mlflow_store.path.lstrip("/")
    postgres = services["postgres"]
    assert environment(postgres)["LEDGER_DB"] == database
    init = next(v.split(":")[0] for v in postgres["volumes"] if v.split(":")[1] == "/docker-entrypoint-initdb.d")
    script = (ROOT / init.removeprefix("./") / "10-ledger-database.sh").read_text()
    assert 'CREATE DATABASE \\"$LEDGER_DB\\"' in script and "set -eu" in script
    settings = RetrainSettings(monitor_score=scheduler["FORECASTER_RETRAIN_MONITOR_SCORE"], ledger_uri=uri)
    assert settings.monitor_score and settings.ledger_uri == uri


ALERTS = ROOT / "deploy" / "alerts.yml"


def exported_metrics() -> set[str]:
    """Every metric family the service exports (service/metrics.py and the ledger's), with the
    sample names Prometheus gives them (_total of a counter, _bucket/_sum/_count of a histogram)."""
    from service.ledger import LedgerMetrics
    from service.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    LedgerMetrics(metrics.registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix for family in metrics.registry.collect() for suffix in suffixes.get(family.type, ("",))
    }


def test_the_alert_rules_are_prometheus_rule_groups_on_metrics_the_service_exports() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    assert set(rules) == {"groups"} and rules["groups"]
    exported = exported_metrics()
    names = []
    for group in rules["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"], rule
            assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule
            used = set(re.findall(r"\b(forecaster_[a-z_]+)\b", rule["expr"]))
            assert used and used <= exported, f"{rule['alert']}: {sorted(used - exported)} not exported"
            names.append(rule["alert"])
    assert len(names) == len(set(names))
    assert {"ForecasterLedgerDropping", "ForecasterLedgerBacklog"} <= set(names)
