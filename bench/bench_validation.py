"""Validation benchmark (`make bench-validation`): binding throughput through the real Kafka
broker, then the time of all day-close rules for 30,000 points.

A synthetic city of DEVICES devices × 3 points (total, production, control) is published on a
private registry topic; READINGS_PER_DEVICE real-time frames per device (power and energy
counter of three circuits: one frame = one reading = three PointReadings) are published on a
private readings topic before the clock starts. One binder (one process, one consumer)
then reads them from Kafka, binds them, publishes the PointReadings to Kafka (acks=all) and
writes point state and daily aggregates to PostgreSQL. Then `run_day` runs every daily and
archive rule for the day over the 30,000 points. Uses a fresh database on DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "services" / "validation"))

from ecowatt_kernel.bus import KafkaBus, KafkaConnection  # noqa: E402
from ecowatt_kernel.db import async_url  # noqa: E402
from harness import DAY, Harness, complete_enterprise, local, meter, reading  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

DEVICES = int(os.environ.get("BENCH_DEVICES", "10000"))
READINGS_PER_DEVICE = int(os.environ.get("BENCH_READINGS_PER_DEVICE", "6"))


def env(name: str, default: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    infra = ROOT / ".infra" / "env"
    if infra.exists():
        for line in infra.read_text().splitlines():
            key, _, found = line.partition("=")
            if key.strip() == name:
                return found.strip()
    return default


async def main() -> None:
    database_url = env("DATABASE_URL", "postgresql://ecowatt@127.0.0.1:5432/ecowatt")
    bootstrap = env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    name = f"ecowatt_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(async_url(database_url), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    bus = KafkaBus(KafkaConnection(bootstrap_servers=bootstrap))
    await bus.start()
    harness: Harness | None = None
    try:
        harness = await Harness.start(bus, f"{database_url.rpartition('/')[0]}/{name}")
        harness.subscription and await harness.subscription.stop()  # start it when data is in
        snapshots = []
        for i in range(DEVICES):
            snapshots += complete_enterprise(f"B{i:05d}")
        started = time.perf_counter()
        await harness.archive(snapshots, wait=False)
        await harness.view.wait_ready(600)
        while len(harness.view.all("point")) < 3 * DEVICES:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        print(f"archive: {len(snapshots)} snapshots in {time.perf_counter() - started:.1f}s")

        readings = [
            reading(
                f"MNB{i:05d}",
                local(DAY, 8) + timedelta(minutes=k),
                {
                    **meter(1, 90.0 + k, 1000.0 + k),
                    **meter(2, 60.0 + k, 500.0 + k),
                    **meter(3, 20.0 + k, 200.0 + k),
                },
            )
            for k in range(READINGS_PER_DEVICE)
            for i in range(DEVICES)
        ]
        await harness.send(readings, wait=False)
        total = len(readings)
        print(f"published {total} readings (not timed)")

        async def handle(records: object) -> None:
            await harness.binder.handle(records)  # type: ignore[arg-type, union-attr]
            harness.handled += len(records)  # type: ignore[arg-type, union-attr]

        started = time.perf_counter()
        harness.subscription = await bus.subscribe(
            group=f"bench.bind.{uuid.uuid4().hex[:6]}",
            topics=[harness.settings.readings_topic],
            handler=handle,
            max_batch=2000,
        )
        await harness.drain(timeout_s=1200)
        elapsed = time.perf_counter() - started
        print(
            f"binding: {total} readings ({3 * total} point readings) in {elapsed:.1f}s = "
            f"{total / elapsed:,.0f} readings/s, {3 * total / elapsed:,.0f} point readings/s"
        )

        started = time.perf_counter()
        stats = await harness.run_day(DAY)
        elapsed = time.perf_counter() - started
        print(
            f"day close: {stats['points']} points, all daily rules in {elapsed:.1f}s; hits {stats['hits']}"  # noqa: E501
        )
    finally:
        if harness is not None:
            await harness.stop()
        await bus.stop()
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()


if __name__ == "__main__":
    asyncio.run(main())
