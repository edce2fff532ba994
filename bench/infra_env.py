"""Where the benchmarks find Kafka, PostgreSQL and Redis.

The environment variable when it is set, else what `make infra-up` wrote to `.infra/env`.
A benchmark without its infrastructure stops with a message, it does not guess a default.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_FILE = Path(__file__).resolve().parent.parent / ".infra" / "env"


def infra(name: str) -> str:
    """The value of `name` (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, REDIS_URL)."""
    if os.environ.get(name):
        return os.environ[name]
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == name and value.strip():
                return value.strip()
    raise SystemExit(f"{name} is not set: run `make infra-up`")
