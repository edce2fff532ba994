from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from ecowatt_kernel.bus import Bus, InProcessBus, KafkaBus, KafkaConnection


@pytest.fixture(params=["memory", "kafka"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """A started bus of each backend; the Kafka one talks to the real broker."""
    if request.param == "memory":
        backend: Bus = InProcessBus()
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        backend = KafkaBus(
            KafkaConnection(bootstrap_servers=bootstrap, client_id="kernel-tests"), linger_ms=2
        )
    await backend.start()
    yield backend
    await backend.stop()
