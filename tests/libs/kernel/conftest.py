from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ecowatt_kernel.bus import Bus, DiskBus, InProcessBus, KafkaBus, KafkaConnection


@pytest.fixture(params=["memory", "disk", "kafka"])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    """A started bus of each backend: in memory, durable in a fresh folder, and the Kafka
    one talking to the real broker."""
    if request.param == "memory":
        backend: Bus = InProcessBus()
    elif request.param == "disk":
        backend = DiskBus(tmp_path / "bus")
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        backend = KafkaBus(
            KafkaConnection(bootstrap_servers=bootstrap, client_id="kernel-tests"), linger_ms=2
        )
    await backend.start()
    yield backend
    await backend.stop()
