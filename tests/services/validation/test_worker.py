"""Two validation worker processes (`python -m ecowatt_validation.worker`,
`ECOWATT_VALIDATION_WORKERS`) divide the partitions of `telemetry.readings`; every reading is
bound once — counted once in its point's day, published on `telemetry.points` — across a
worker joining and a worker being SIGKILLed.

Real Kafka, PostgreSQL (a scratch database) and Redis; private topics. Sixteen enterprises,
one logger each (total, production and control circuits), one reading a minute for two
hours. Minutes 0–40 are bound by worker 0 alone (it caches every point's state); worker 1
joins, and worker 0 must drop the cached state of the devices whose partitions it gives up
(the revoke hook); minutes 40–80 go through both; worker 1 is killed while minutes 80–100
are being bound and worker 0 takes its partitions back. Had worker 0 kept its old copies,
the point-state revision check would refuse them and retry (logged): the test requires none.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import timedelta

import pytest
from ecowatt_kernel.bus import KafkaBus, KafkaConnection, Record
from ecowatt_kernel.bus.partitioner import partition_for_key
from ecowatt_kernel.contracts import TOPICS, PointReading, TelemetryReading, decode, encode
from ecowatt_kernel.db import Database, scratch_database
from harness import DAY, change, complete_enterprise, local, meter, reading
from sqlalchemy import text
from worker_processes import WorkerProcess, all_committed, infra_env, wait_until

pytestmark = pytest.mark.integration

ENTERPRISES = 16
MINUTES = 120
START = local(DAY, 8, 0)


def worker_env(
    index: int, *, kafka: str, database: str, redis: str, topics: dict[str, str], prefix: str
) -> dict[str, str]:
    return {
        **infra_env(kafka=kafka, database=database, redis=redis, instance=f"validation-w{index}"),
        "ECOWATT_VALIDATION_WORKERS": "2",
        "ECOWATT_VALIDATION_WORKER_INDEX": str(index),
        "ECOWATT_VALIDATION_CONSUMER_PREFIX": prefix,
        "ECOWATT_READINGS_TOPIC": topics["telemetry.readings"],
        "ECOWATT_POINTS_TOPIC": topics["telemetry.points"],
        "ECOWATT_REGISTRY_TOPIC": topics["registry.changes"],
        "ECOWATT_FINDINGS_TOPIC": topics["quality.findings"],
    }


def minute_readings(mns: list[str], first: int, last: int) -> list[TelemetryReading]:
    """One reading a minute per logger: 10 kW on each circuit and its energy counter."""
    out = []
    for m in range(first, last):
        t = START + timedelta(minutes=m)
        for mn in mns:
            items: dict[str, dict[str, str]] = {}
            for circuit in (1, 2, 3):
                items |= meter(circuit, 10.0, 1000.0 + m * 10.0 / 60)
            out.append(reading(mn, t, items))
    return out


async def test_two_workers_bind_each_reading_once(
    kafka_bootstrap: str, database_url: str, redis_url: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    prefix = f"test.validation-workers.{tag}"
    topics = {name: f"{prefix}.{name}" for name in TOPICS}
    readings_topic, group = topics["telemetry.readings"], f"{prefix}.bind"
    enterprises = [f"VW{i:02d}" for i in range(ENTERPRISES)]
    mns = [f"MNVW{i:02d}" for i in range(ENTERPRISES)]
    archive = [
        snapshot
        for eid, mn in zip(enterprises, mns, strict=True)
        for snapshot in complete_enterprise(eid, mn)
    ]

    bus = KafkaBus(KafkaConnection(bootstrap_servers=kafka_bootstrap))
    await bus.start()
    workers: list[WorkerProcess] = []
    try:
        await bus.ensure_topics(
            [dataclasses.replace(spec, name=topics[spec.name]) for spec in TOPICS.values()]
        )
        await bus.publish([encode(change(s), topic=topics["registry.changes"]) for s in archive])
        bound: list[PointReading] = []

        async def collect(records: Sequence[Record]) -> None:
            bound.extend(decode(r).data for r in records)

        await bus.subscribe(
            group=f"{prefix}.test", topics=[topics["telemetry.points"]], handler=collect
        )

        async def send(first: int, last: int) -> None:
            await bus.publish(
                [encode(r, topic=readings_topic) for r in minute_readings(mns, first, last)]
            )

        async def all_bound() -> bool:
            return await all_committed(bus, kafka_bootstrap, group, readings_topic)

        async with scratch_database(database_url) as db_url:
            env = {"database": db_url, "topics": topics, "prefix": prefix}
            env |= {"kafka": kafka_bootstrap, "redis": redis_url}

            def worker(index: int) -> WorkerProcess:
                return WorkerProcess(
                    "ecowatt_validation.worker",
                    worker_env(index, **env),
                    f"validation worker {index}",
                )

            first = await worker(0).start()
            workers.append(first)
            await send(0, 40)
            await wait_until("minutes 0–40 bound by worker 0", all_bound, 60)

            second = await worker(1).start()
            workers.append(second)

            async def divided() -> bool:
                held = [first.held(group), second.held(group)]
                return all(held) and set().union(*held) == set(range(12))  # type: ignore[arg-type]

            await wait_until("both workers hold partitions", divided, 60)
            partitions = TOPICS["telemetry.readings"].partitions
            of_second = {
                m
                for m in mns
                if partition_for_key(m.encode(), partitions) in (second.held(group) or set())
            }
            assert of_second and of_second != set(mns), "one worker carries every logger"
            await send(40, 80)
            await wait_until("minutes 40–80 bound by both", all_bound, 60)

            await send(80, 100)
            second.kill()  # while it binds minutes 80–100 of its loggers
            await send(100, MINUTES)
            await wait_until("the rest bound by worker 0", all_bound, 90)
            assert first.held(group) == set(range(12))

            expected = {
                (f"{eid}-{suffix}", START + timedelta(minutes=m))
                for eid in enterprises
                for suffix in ("PT", "PP", "PC")
                for m in range(MINUTES)
            }
            await wait_until(
                "every point reading published",
                lambda: _true({(p.point_id, p.data_time) for p in bound} >= expected),
                30,
            )
            database = Database(db_url, schema="validation")
            try:
                async with database.session() as session:
                    rows = (
                        await session.execute(
                            text(
                                "SELECT point_id, samples FROM validation.point_daily"
                                " WHERE day = :day"
                            ),
                            {"day": DAY},
                        )
                    ).all()
            finally:
                await database.dispose()
            samples = {str(point_id): int(count) for point_id, count in rows}
            assert samples == {p: MINUTES for p, _ in expected}, "a reading counted twice or not"
            conflicts = [line for w in workers for line in w.lines if "changed under this" in line]
            assert not conflicts, conflicts
    finally:
        for process in workers:
            await process.stop()
        await bus.stop()


async def _true(value: bool) -> bool:
    return value
