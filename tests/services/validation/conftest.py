from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ecowatt_kernel.bus import Bus, InProcessBus, KafkaBus, KafkaConnection

sys.path.insert(0, str(Path(__file__).parent))

from harness import Harness

pytestmark = pytest.mark.integration


@pytest.fixture
async def memory_bus() -> AsyncIterator[Bus]:
    bus = InProcessBus()
    await bus.start()
    yield bus
    await bus.stop()


@pytest.fixture
async def kafka_bus(kafka_bootstrap: str) -> AsyncIterator[Bus]:
    bus = KafkaBus(KafkaConnection(bootstrap_servers=kafka_bootstrap))
    await bus.start()
    yield bus
    await bus.stop()


@pytest.fixture
async def harness(memory_bus: Bus, empty_database: str) -> AsyncIterator[Harness]:
    h = await Harness.start(memory_bus, empty_database)
    yield h
    await h.stop()
