"""No API answers a 5xx, whatever it is sent: schemathesis over every service's OpenAPI.

For each service, each operation gets `EXAMPLES_PER_OPERATION` generated requests — valid
per its schema (positive: NUL bytes and other control characters in strings, 20-digit
integers, far dates …) and invalid (negative: wrong types, missing fields, out-of-range
numbers) — with an administrator's token and with a district officer's (scoped) token. Each
response is checked with schemathesis's `not_a_server_error`. Every operation is tried even
after a failure, and the test fails listing every operation that answered 5xx with the
request that did it (as a curl command).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from ecowatt_standalone.gateway import SERVICES
from fuzz_platform import Platform
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES_PER_OPERATION = int(os.environ.get("ECOWATT_FUZZ_EXAMPLES", "20"))
"""Per operation and token (20 × ~110 operations × 2 tokens: about two minutes on two cores)."""

SKIPPED_OPERATIONS = {
    # Generating a synthetic city of up to 5,000 enterprises per example is a benchmark,
    # not a fuzz case; its input bounds are tested in tests/services/registry.
    "POST /admin/synthetic-city",
}


@dataclass
class Failure:
    operation: str
    error: str
    curl: str


def _operations(platform: Platform, service: str) -> list[Any]:
    raw = httpx.get(f"{platform.url(service)}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(raw)
    operations = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if f"{operation.method.upper()} {operation.path}" not in SKIPPED_OPERATIONS:
            operations.append(operation)
    return operations


def _fuzz_operation(
    operation: Any, base_url: str, headers: dict[str, str], session: requests.Session
) -> Failure | None:
    """The first 5xx of `operation` among its generated requests, if any."""
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    found: list[Failure] = []

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, session=session, timeout=60)
        try:
            case.validate_response(response, checks=[not_a_server_error], headers=headers)
        except (AssertionError, FailureGroup) as error:
            if not found:
                found.append(
                    Failure(
                        operation=f"{operation.method.upper()} {operation.path}",
                        error=_summary(error),
                        curl=case.as_curl_command(headers=headers),
                    )
                )

    run()
    return found[0] if found else None


def _fuzz(platform: Platform, service: str, token: str) -> tuple[int, list[Failure]]:
    headers = {"Authorization": f"Bearer {token}"}
    operations = _operations(platform, service)
    session = requests.Session()
    failures = [
        failure
        for operation in operations
        if (failure := _fuzz_operation(operation, platform.url(service), headers, session))
    ]
    return len(operations), failures


def _summary(error: BaseException) -> str:
    """The failure's title and the body that came back, on one line each."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if isinstance(error, FailureGroup):
        lines = [line for e in error.exceptions for line in str(e).splitlines() if line.strip()]
    return " | ".join(lines[:3])


def _report(failures: list[Failure]) -> str:
    return "\n".join(f"{f.operation}: {f.error}\n    {f.curl}" for f in failures)


@pytest.mark.parametrize("who", ["admin", "scoped"])
@pytest.mark.parametrize("service", [spec.name for spec in SERVICES])
def test_no_operation_answers_a_server_error(platform: Platform, service: str, who: str) -> None:
    token = platform.admin_token if who == "admin" else platform.scoped_token
    count, failures = _fuzz(platform, service, token)
    assert count > 0, f"{service} publishes no operation"
    assert not failures, f"{len(failures)} of {count} operations answered 5xx:\n" + _report(
        failures
    )
