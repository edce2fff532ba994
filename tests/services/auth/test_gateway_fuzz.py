"""Schemathesis against the gateway's merged OpenAPI document (every service behind it):
without credentials no operation is accepted (401 for everything that is not public), and
with an administrator's no operation answers a 5xx.

The gateway runs with every service, as standalone mode composes them, behind a real HTTP
server (uvicorn on a free loopback port) on an event loop of its own, so that schemathesis
sends real requests and the test stays synchronous, as Hypothesis wants. Each service is
fuzzed in depth on its own port by tests/api; here the point is the gateway: what it lets
through and that nothing it adds can fail.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from ecowatt_kernel.db import scratch_database
from ecowatt_kernel.identity import DataScope, Identity, Role
from ecowatt_standalone.gateway import SERVICES
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from tests.services.auth.conftest import Platform, isolated_redis_url, start_platform

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = int(os.environ.get("ECOWATT_GATEWAY_FUZZ_EXAMPLES", "6"))
SKIPPED = {
    # Generating a synthetic city per example is a benchmark, not a fuzz case.
    "POST /api/registry/admin/synthetic-city",
}


class Served:
    """The platform on a loop in a thread, its gateway on a real port."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        self.database_url, self.redis_url = database_url, redis_url
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.platform: Platform | None = None
        self._stop: asyncio.Event | None = None
        self._done: Any = None

    async def _run(self, started: threading.Event) -> None:
        import uvicorn

        self._stop = asyncio.Event()
        async for platform in start_platform(
            self.database_url,
            self.redis_url,
            SERVICES,
            auth_rate_user_per_minute=1_000_000,
            auth_rate_anonymous_per_minute=1_000_000,
            auth_lockout_failures=1_000_000,
        ):
            self.platform = platform
            server = uvicorn.Server(
                uvicorn.Config(
                    platform.gateway,
                    host="127.0.0.1",
                    port=self.port,
                    lifespan="off",  # start_platform runs the lifespan
                    log_config=None,
                    access_log=False,
                )
            )
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
            task = asyncio.create_task(server.serve())
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
                await asyncio.sleep(0.05)
            started.set()
            await self._stop.wait()
            server.should_exit = True
            await task

    def start(self) -> None:
        self.thread.start()
        started = threading.Event()
        self._done = asyncio.run_coroutine_threadsafe(self._run(started), self.loop)
        deadline = time.monotonic() + 180
        while not started.wait(0.2):
            if self._done.done():
                self._done.result()
            assert time.monotonic() < deadline, "the platform did not start"

    def stop(self) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._done.result(timeout=120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)

    def admin_headers(self) -> dict[str, str]:
        """A fresh administrator token (a fuzzed `DELETE /token` revokes only that one)."""
        assert self.platform is not None
        identity = Identity(
            subject="fuzz-admin", roles=frozenset({Role.ADMIN}), scope=DataScope(all=True)
        )
        token = self.platform.runtime.signer.sign(identity, ttl=timedelta(minutes=30))
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def served(database_url: str, redis_url: str) -> Iterator[Served]:
    saved = {k: os.environ.get(k) for k in ("ECOWATT_HJ212_HOST", "ECOWATT_HJ212_PORT")}
    os.environ["ECOWATT_HJ212_HOST"] = "127.0.0.1"
    os.environ["ECOWATT_HJ212_PORT"] = "0"
    loop = asyncio.new_event_loop()
    database = scratch_database(database_url)
    url = loop.run_until_complete(database.__aenter__())
    served = Served(url, isolated_redis_url(redis_url).rsplit("/", 1)[0] + "/10")
    try:
        served.start()
        yield served
    finally:
        served.stop()
        loop.run_until_complete(database.__aexit__(None, None, None))
        loop.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def operations(base: str) -> list[Any]:
    document = httpx.get(f"{base}/api/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if f"{operation.method.upper()} {operation.path}" not in SKIPPED:
            found.append(operation)
    return found


def fuzz(operation: Any, base: str, check: Any, headers: Any) -> str | None:
    """The first failing request of `operation` (as curl), or None."""
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    found: list[str] = []
    session = requests.Session()

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        sent = headers()
        # the generated case must not bring credentials of its own
        for name in ("Authorization", "X-API-Key", "Cookie"):
            (case.headers or {}).pop(name, None)
        response = case.call(base_url=base, headers=sent, session=session, timeout=60)
        problem = check(case, response)
        if problem and not found:
            found.append(f"{problem}\n    {case.as_curl_command(headers=sent)}")

    run()
    return found[0] if found else None


def test_nothing_is_accepted_without_valid_credentials(served: Served) -> None:
    base = f"http://127.0.0.1:{served.port}"
    ops = operations(base)
    assert len(ops) > 100

    def unauthenticated(case: Any, response: Any) -> str | None:
        public = case.operation.definition.raw.get("x-ecowatt-roles") == "public"
        if response.status_code >= 500:
            return f"{response.status_code} {response.text[:200]}"
        if not public and response.status_code != 401:
            return f"accepted without credentials: {response.status_code} {response.text[:200]}"
        return None

    failures = [f for op in ops if (f := fuzz(op, base, unauthenticated, dict))]
    assert not failures, f"{len(failures)} operations:\n" + "\n".join(failures)


def test_no_operation_answers_a_server_error_through_the_gateway(served: Served) -> None:
    """The auth service's operations (the others are fuzzed in depth on their own ports by
    tests/api; ECOWATT_GATEWAY_FUZZ_ALL=1 takes every operation through the gateway)."""
    base = f"http://127.0.0.1:{served.port}"
    every = os.environ.get("ECOWATT_GATEWAY_FUZZ_ALL") == "1"
    chosen = [op for op in operations(base) if every or op.path.startswith("/api/auth/")]
    assert len(chosen) > 35

    def no_server_error(case: Any, response: Any) -> str | None:
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except (AssertionError, FailureGroup) as error:
            return str(error).splitlines()[0] if str(error) else type(error).__name__
        return None

    failures = [f for op in chosen if (f := fuzz(op, base, no_server_error, served.admin_headers))]
    assert not failures, f"{len(failures)} operations answered 5xx:\n" + "\n".join(failures)
