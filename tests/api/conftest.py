"""The platform the OpenAPI fuzzer talks to (`fuzz_platform.Platform`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fuzz_platform import Platform


@pytest.fixture(scope="module")
def platform(database_url: str, redis_url: str) -> Iterator[Platform]:
    running = Platform(database_url, redis_url)
    running.start()
    try:
        yield running
    finally:
        running.stop()
