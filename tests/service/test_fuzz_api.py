"""Schema-driven fuzzing of the real `forecaster serve` process with schemathesis's default checks
(every built-in check it enables by default: no 5xx, documented statuses, headers and bodies,
valid data accepted, invalid data rejected, 405 for other methods, the key where declared...):
a few hundred requests built from the OpenAPI document, valid and invalid, with no failure.

The document states what JSON Schema can: the one-of rule, the served model's lookback (minItems)
and horizon (maximum), the series limit. A few rules of a history span several fields, which JSON
Schema cannot state and the document says in words: dates strictly increasing and not in the
future, `low <= open, close <= high`, columns of one length, series ids unique, tickers of the
data source. `obey_cross_field_rules` applies them to each generated valid body, as any client
would, so that valid bodies reach the model (the test asserts some 200s). Deterministic
(derandomized).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from test_serve_process import serve_process, wait_for

KEY = "fuzz-key"
# Examples per mode: /forecast (the one body) gets most, every other operation a few (they take
# no input beyond headers).
BODY_EXAMPLES = 150
OTHER_EXAMPLES = 10
LAST_DAY = dt.date(2023, 12, 22)  # the session's data end; any day up to tomorrow would do
PRICES = ("open", "high", "low", "close")


def obey_bars(bars: list[dict[str, Any]]) -> None:
    """Dates one a day up to LAST_DAY, high and low bounding the bar (in place)."""
    for index, bar in enumerate(bars):
        bar["date"] = (LAST_DAY - dt.timedelta(days=len(bars) - 1 - index)).isoformat()
        prices = [bar[k] for k in PRICES]
        bar["high"], bar["low"] = max(prices), min(prices)


def obey_history(history: Any) -> Any:
    if isinstance(history, list):
        obey_bars(history)
        return history
    length = min(len(column) for column in history.values())
    bars = [{name: history[name][i] for name in history} for i in range(length)]
    obey_bars(bars)
    return {name: [bar[name] for bar in bars] for name in history}


def obey_cross_field_rules(body: dict[str, Any], tickers: list[str]) -> dict[str, Any]:
    """A schema-valid body made to follow the rules the document states in words only."""
    items = [body, *(body.get("series") or [])]
    for index, item in enumerate(items):
        if item.get("history") is not None:
            item["history"] = obey_history(item["history"])
        if item.get("ticker") is not None:
            item["ticker"] = tickers[len(item["ticker"]) % len(tickers)]
        if index and item.get("id") is not None:
            item["id"] = f"{item['id'][:50]}#{index}"  # unique, within the 64 characters allowed
    return body


@pytest.fixture(scope="module")
def live(registry, free_port) -> Iterator[str]:
    port = free_port()
    with serve_process(registry, port, FORECASTER_API_KEY=KEY, FORECASTER_LOG_LEVEL="warning") as (process, log):
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=10) as http:
            wait_for(http, process, log, "/ready", 200)
        yield url
        process.terminate()
        process.wait(30)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_pass_schemathesis_default_checks(live, registry, mode):
    schema = schemathesis.openapi.from_url(f"{live}/openapi.json")
    tickers = sorted(registry.frame["ticker"].unique())
    statuses: Counter[tuple[str, int]] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        has_input = bool(operation.body) or any(True for _ in operation.iter_parameters())
        if mode is GenerationMode.NEGATIVE and not has_input:
            continue  # nothing to make invalid

        @settings(
            max_examples=BODY_EXAMPLES if operation.body else OTHER_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],  # a failure is reported as found, not shrunk for minutes
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def exercise(case: schemathesis.Case) -> None:
            if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
                case.body = obey_cross_field_rules(case.body, tickers)
            headers = {"X-API-Key": KEY}
            response = case.call(base_url=live, headers=headers, timeout=30)
            statuses[(case.operation.label, response.status_code)] += 1
            case.validate_response(response, headers=headers)  # schemathesis's default checks

        exercise()
    assert sum(statuses.values()) >= 100, statuses
    assert [key for key in statuses if key[1] >= 500] == [], statuses
    if mode is GenerationMode.POSITIVE:  # valid bodies reach the model
        assert statuses[("POST /forecast", 200)] >= 20, statuses
