"""`forecaster serve` refuses bad settings before it starts: one line per problem naming the
FORECASTER_* variable or the flag it came from, exit code 2, no traceback; the exchange and the
device are checked by the library's own rules, so no service starts that can never answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings

FORECASTER = str(Path(sys.executable).parent / "forecaster")


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    clean |= {"COLUMNS": "250", "PYTHONWARNINGS": "ignore", "CUDA_VISIBLE_DEVICES": "", **env}
    return subprocess.run(
        [FORECASTER, "serve", "--host", "127.0.0.1", *args],
        env=clean,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_bad_settings_are_refused_in_one_line_each_naming_the_variable_or_flag(tmp_path, free_port):
    bad = {
        "FORECASTER_MAX_BODY_BYTES": "abc",
        "FORECASTER_DATA_SOURCE": "bogus",
        "FORECASTER_LOG_FORMAT": "xml",
        "FORECASTER_STALE_POLICY": "maybe",
        "FORECASTER_WORKERS": "0",
        "FORECASTER_EXCHANGE": "BOGUS",
        "FORECASTER_DEVICE": "tpu",
    }
    result = serve(tmp_path, "--port", str(free_port()), "--log-level", "loud", **bad)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and all(line.startswith("error: ") for line in lines), lines
    named = sorted(line.removeprefix("error: ").split(":", 1)[0] for line in lines)
    assert named == sorted([*bad, "--log-level"]), lines
    by_name = {line.removeprefix("error: ").split(":", 1)[0]: line for line in lines}
    assert by_name["FORECASTER_MAX_BODY_BYTES"].startswith("error: FORECASTER_MAX_BODY_BYTES: Input should be a valid")
    assert "'BOGUS' is not an exchange calendar" in by_name["FORECASTER_EXCHANGE"]
    assert "expected 'auto', 'cpu' or 'cuda', got 'tpu'" in by_name["FORECASTER_DEVICE"]


@pytest.mark.slow
@pytest.mark.parametrize("port", ["99999", "-1", "0"])
def test_a_port_outside_1_to_65535_is_refused_naming_the_flag(tmp_path, port):
    result = serve(tmp_path, "--port", port)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "--port" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("exchange", "BOGUS", "exchange: 'BOGUS' is not an exchange calendar"),
        ("device", "tpu", "device: expected 'auto', 'cpu' or 'cuda', got 'tpu'"),
    ],
)
def test_settings_check_exchange_and_device_by_the_library_s_rules(setting, value, expected):
    with pytest.raises(ValidationError) as refused:
        Settings(**{setting: value})
    (error,) = refused.value.errors()
    assert error["loc"] == (setting,) and expected in error["msg"]
    assert Settings(exchange="XLON", device="cpu").exchange == "XLON"
