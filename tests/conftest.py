"""Test-wide fixtures: the real infrastructure every integration test talks to.

`make test` starts Kafka, PostgreSQL and Redis (`tools/infra.py up`) unless
KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL and REDIS_URL are given; tests read those variables,
falling back to `.infra/env`. A test that needs a server that cannot be reached FAILS: it is
never skipped, so a CI run without infrastructure cannot pass by accident.

Services refuse to start without ECOWATT_ENVIRONMENT; the tests run as `test` (as
`make test` sets it), also when pytest is started directly.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from ecowatt_kernel.db import scratch_database

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("ECOWATT_ENVIRONMENT", "test")
# Helpers shared by tests of several folders (`from bearer import FreshBearer`).
sys.path.insert(0, str(ROOT / "tests" / "support"))


def _infra_env() -> dict[str, str]:
    values: dict[str, str] = {}
    env_file = ROOT / ".infra" / "env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if "=" in line:
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
    for key in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"):
        if os.environ.get(key):
            values[key] = os.environ[key]
    return values


def _require(name: str, url: str | None, default_port: int) -> str:
    if not url:
        pytest.fail(f"{name} is not configured: run `make infra-up` or set it", pytrace=False)
    first = url.split(",")[0]
    parts = urlsplit(first if "://" in first else f"tcp://{first}")
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        pytest.fail(
            f"{name} at {host}:{port} is unreachable ({exc}); run `make infra-up`", pytrace=False
        )
    return url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return _require("KAFKA_BOOTSTRAP_SERVERS", _infra_env().get("KAFKA_BOOTSTRAP_SERVERS"), 9092)


@pytest.fixture(scope="session")
def database_url() -> str:
    return _require("DATABASE_URL", _infra_env().get("DATABASE_URL"), 5432)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _require("REDIS_URL", _infra_env().get("REDIS_URL"), 6379)


@pytest.fixture
async def empty_database(database_url: str) -> AsyncIterator[str]:
    """A brand-new database on the real server, dropped afterwards."""
    async with scratch_database(database_url) as url:
        yield url
