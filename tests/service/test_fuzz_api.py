"""Schema-driven fuzzing of the real `forecaster serve` process: a few hundred requests built
from the OpenAPI document, valid and invalid, none answered 5xx, every answer a documented
status whose body and headers match the documented schema. Deterministic (derandomized)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_serve_process import serve_process, wait_for

KEY = "fuzz-key"
# Examples per mode: /forecast (the one body) gets most, every other operation a few (they take
# no input beyond headers). About 350 requests in all, some 25 s on two cores.
BODY_EXAMPLES = 150
OTHER_EXAMPLES = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


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
def test_fuzzed_requests_get_documented_answers_and_never_5xx(live, mode):
    schema = schemathesis.openapi.from_url(f"{live}/openapi.json")
    statuses: Counter[tuple[str, int]] = Counter()
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])
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
            headers = {"X-API-Key": KEY}
            response = case.call(base_url=live, headers=headers, timeout=30)
            statuses[(case.operation.label, response.status_code)] += 1
            case.validate_response(response, checks=checks, headers=headers)

        exercise()
    assert sum(statuses.values()) >= 100, statuses
    assert [key for key in statuses if key[1] >= 500] == [], statuses
