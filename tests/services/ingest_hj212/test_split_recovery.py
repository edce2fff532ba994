"""A split set whose first parts were answered by an ingest process that then went away (a
crash, a restart, a device moving to another worker) still gives one whole reading: the
process that gets the last parts completes the set from the parts the frame archive holds.

Real broker, PostgreSQL and Redis; the ingest service as `create_app` builds it (archive
consumer included), started twice on the same database and topics.
"""

from __future__ import annotations

import ecowatt_hj212 as hj212
import pytest
from ecowatt_kernel.bus import KafkaBus
from ecowatt_kernel.redis_client import Redis

from .conftest import DeviceClient, TopicReader, Topics, new_mn, upload
from .test_archive import city, ingest_service, publish_registry

pytestmark = pytest.mark.integration

DATA_TIME = "20261126084000"


async def test_a_set_split_across_two_processes_gives_one_whole_reading(
    kafka: KafkaBus, redis: Redis, topics: Topics, empty_database: str
) -> None:
    mns = {"E1": new_mn(), "E2": new_mn(), "unknown": new_mn()}
    mn = mns["E1"]
    registry_topic = f"{topics.frames}.registry"
    await publish_registry(kafka, registry_topic, city(mns))
    values = [
        (f"xe01{circuit:02d}-{suffix}", value)
        for circuit in range(1, 9)
        for suffix, value in (("Avg", f"{40 + circuit}.05"), ("Flag", "N"))
    ]
    parts = hj212.encode_split(
        upload(mn, cn="2051", data_time=DATA_TIME, values=values), max_segment_size=300
    )
    assert len(parts) >= 2
    readings = await TopicReader(kafka, topics.readings).start()
    service = {
        "bus": kafka,
        "redis": redis,
        "database_url": empty_database,
        "topics": topics,
        "registry_topic": registry_topic,
        "split_timeout_s": 2.0,
    }

    # The first process answers every part but the last, then goes away with the set.
    async with ingest_service(**service) as first:
        device = await DeviceClient.connect(first.server.port)
        for part in parts[:-1]:
            await device.send(part)
            await device.expect("9014")
        await first.archived(len(parts) - 1, mn=mn)  # the answered parts are archived
        await device.close()

    # The device sends its last part to the next process.
    async with ingest_service(**service) as second:
        device = await DeviceClient.connect(second.server.port)
        await device.send(parts[-1])
        await device.expect("9014")
        [reading] = await readings.wait_for(lambda e: len(e) >= 1, "the reading", limit_s=60)
        await device.close()

    assert reading.idempotency_key == f"{mn}|2051|{DATA_TIME}", "a whole set, not a partial one"
    assert len(reading.items) == 8, sorted(reading.items)
    assert reading.items["xe0101"] == {"Avg": "41.05", "Flag": "N"}
    assert reading.items["xe0108"] == {"Avg": "48.05", "Flag": "N"}
    await readings.stop()
