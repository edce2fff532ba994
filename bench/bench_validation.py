"""Validation benchmark (`make bench-validation`): binding throughput through the real Kafka
broker, then the time of all day-close rules for 30,000 points.

A synthetic city of DEVICES devices × 3 points (total, production, control) is published on a
private registry topic; READINGS_PER_DEVICE real-time frames per device (power and energy
counter of three circuits: one frame = one reading = three PointReadings) are published on a
private readings topic before the clock starts. One binder (one process, one consumer)
then reads them from Kafka, binds them, publishes the PointReadings to Kafka (acks=all) and
writes point state and daily aggregates to PostgreSQL, committing offsets after each batch.

Binding is measured in two stages, each from the first handler call to the last:

* cold: the first frame of every device — every point's state and day row is looked up in
  the database and created (what a freshly started or rebalanced binder does once);
* steady: the remaining frames, with the binder's caches warm (the normal running state).

Then the binder's own CPU per reading, without the broker and the database: `process` on
readings already decoded, caches warm, with PostgreSQL replaced by a stand-in that takes the
staged rows without encoding or sending them and `telemetry.points` built but not published —
in batches of 5,000 (bulk) and of 100 (live), best of BENCH_CPU_REPEATS (5) passes of one new
frame per device each. On a machine shared with other work this is the steadiest figure (the
least of several passes, no other process's work in it); what it leaves out (row encoding in
asyncpg, Kafka production, envelope decoding) the stages above include.

Then `run_day` runs every daily and archive rule for the day over all points (and once more,
as a re-run of the same day). Uses a fresh database on DATABASE_URL.

Environment: BENCH_DEVICES (10000), BENCH_READINGS_PER_DEVICE (6), BENCH_MAX_BATCH (the
service's `bind_max_batch`), BENCH_SHARED_CREDIT_CODE=1 (every enterprise shares one credit
code, as the first version of this bench did: 10,000 `credit_code_invalid` findings whose
evidence lists the 9,999 other enterprises — a pathological archive, not a realistic one),
BENCH_PROFILE=DIR (cProfile each timed phase into DIR and print its top functions).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import math
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "services" / "validation"))

from ecowatt_kernel.bus import KafkaBus, KafkaConnection, Record  # noqa: E402
from ecowatt_kernel.contracts import Snapshot, TelemetryReading  # noqa: E402
from ecowatt_kernel.db import scratch_database  # noqa: E402
from ecowatt_kernel.tracing import new_trace_id, trace_context  # noqa: E402
from ecowatt_validation.reference import credit_check_char  # noqa: E402
from ecowatt_validation.service import freeze_archive  # noqa: E402
from ecowatt_validation.settings import ValidationSettings  # noqa: E402
from harness import DAY, Harness, complete_enterprise, local, meter, reading  # noqa: E402
from infra_env import infra  # noqa: E402

DEVICES = int(os.environ.get("BENCH_DEVICES", "10000"))
READINGS_PER_DEVICE = int(os.environ.get("BENCH_READINGS_PER_DEVICE", "6"))
SETTINGS = ValidationSettings()
MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "0")) or SETTINGS.bind_max_batch
CONCURRENT = os.environ.get("BENCH_CONCURRENT", "1" if SETTINGS.bind_concurrent_partitions else "0")
CONCURRENT_PARTITIONS = CONCURRENT not in ("", "0")
SHARED_CREDIT_CODE = os.environ.get("BENCH_SHARED_CREDIT_CODE", "") not in ("", "0")
PROFILE = os.environ.get("BENCH_PROFILE", "")
DUPLICATE_CODE_EVERY = 100  # every 100th enterprise reuses its neighbour's credit code


CPU_REPEATS = int(os.environ.get("BENCH_CPU_REPEATS", "5"))


class _NoDatabase:
    """Takes a batch's statements and staged rows and does nothing with them (`cpu_stage`)."""

    def __init__(self) -> None:
        self.staged = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_NoDatabase]:
        yield self

    session = transaction

    async def connection(self) -> _NoDatabase:
        return self

    async def exec_driver_sql(self, *args: Any) -> None:
        return None

    async def get_raw_connection(self) -> _NoDatabase:
        return self

    @property
    def driver_connection(self) -> _NoDatabase:
        return self

    async def execute(self, *args: Any) -> None:
        return None

    async def executemany(self, *args: Any) -> None:
        return None

    async def copy_records_to_table(self, table: str, *, records: Any, **_: Any) -> None:
        rows = list(records)
        if "state" in table:
            self.staged = len(rows)

    async def fetchval(self, *args: Any) -> int:
        return self.staged  # every staged state row "written": no revision conflict


async def cpu_stage(harness: Harness, first_round: int) -> None:
    """The binder's CPU per reading without I/O (see the module's docstring)."""
    binder = harness.binder
    owner = getattr(binder, "store", binder)  # the state's storage (the binder itself before)
    database, binder.publish_points = owner.database, False
    owner.database = _NoDatabase()
    try:
        for name, size in (("bulk", 5000), ("live", 100)):
            best = math.inf
            for repeat in range(CPU_REPEATS):
                readings = frames(range(first_round + repeat, first_round + repeat + 1))
                gc.collect()
                started = time.process_time()
                for start in range(0, len(readings), size):
                    with trace_context(new_trace_id()):  # as the bus restores a batch's trace
                        await binder.process(readings[start : start + size])
                best = min(best, (time.process_time() - started) / len(readings))
            first_round += CPU_REPEATS
            print(
                f"binding CPU without I/O, batches of {size} ({name}): {1e6 * best:.1f} us per "
                f"reading (best of {CPU_REPEATS} passes of {DEVICES} readings)"
            )
    finally:
        owner.database, binder.publish_points = database, True


def credit_code(i: int) -> str:
    """A valid, unique GB 32100 code for enterprise `i`."""
    first17 = f"91350100M{i:08d}"
    return first17 + credit_check_char(first17)


def city() -> list[Snapshot]:
    snapshots: list[Snapshot] = []
    for i in range(DEVICES):
        if SHARED_CREDIT_CODE:
            snapshots += complete_enterprise(f"B{i:05d}")
        else:
            owner = i - 1 if i % DUPLICATE_CODE_EVERY == 1 else i
            snapshots += complete_enterprise(f"B{i:05d}", credit_code=credit_code(owner))
    return snapshots


def frames(rounds: range) -> list[TelemetryReading]:
    return [
        reading(
            f"MNB{i:05d}",
            local(DAY, 8) + timedelta(minutes=k),
            {
                **meter(1, 90.0 + k, 1000.0 + k),
                **meter(2, 60.0 + k, 500.0 + k),
                **meter(3, 20.0 + k, 200.0 + k),
            },
        )
        for k in rounds
        for i in range(DEVICES)
    ]


@asynccontextmanager
async def profiled(name: str) -> AsyncIterator[None]:
    if not PROFILE:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        path = dump(profile, name)
        print(f"--- profile {name} ({path}), top 25 by own time")
        pstats.Stats(str(path)).sort_stats("tottime").print_stats(25)


def dump(profile: cProfile.Profile, name: str) -> Path:
    Path(PROFILE).mkdir(parents=True, exist_ok=True)
    path = Path(PROFILE) / f"{name}.prof"
    profile.dump_stats(path)
    return path


class Stage:
    """Handler timings of one binding stage."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, float, int]] = []  # (start, seconds, records)
        self.cpu_start = time.process_time()

    def report(self, name: str) -> float:
        first = self.batches[0][0]
        last = max(start + seconds for start, seconds, _ in self.batches)
        elapsed = last - first
        records = sum(n for _, _, n in self.batches)
        cpu = time.process_time() - self.cpu_start
        latencies = sorted(seconds * 1000 for _, seconds, _ in self.batches)
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        print(
            f"binding {name}: {records} readings ({3 * records} point readings) in "
            f"{elapsed:.2f}s = {records / elapsed:,.0f} readings/s, "
            f"{3 * records / elapsed:,.0f} point readings/s; {len(self.batches)} batches of "
            f"{records / len(self.batches):,.0f} readings, latency p50 "
            f"{statistics.median(latencies):.0f} ms, p95 {p95:.0f} ms; this process used "
            f"{cpu:.2f} s of CPU ({1e6 * cpu / records:.0f} us per reading)"
        )
        return elapsed


async def bind_stage(
    harness: Harness, bus: KafkaBus, group: str, rounds: range, name: str
) -> tuple[int, float]:
    readings = frames(rounds)
    count = len(readings)
    await harness.send(readings, wait=False)
    del readings  # the bench's own objects must not weigh on the binder's garbage collections
    gc.collect()
    stage = Stage()

    async def handle(records: Sequence[Record]) -> None:
        started = time.perf_counter()
        await harness.binder.handle(records)
        stage.batches.append((started, time.perf_counter() - started, len(records)))
        harness.handled += len(records)

    async with profiled(f"binding-{name}"):
        subscription = await bus.subscribe(
            group=group,
            topics=[harness.settings.readings_topic],
            handler=handle,
            max_batch=MAX_BATCH,
            concurrent_partitions=CONCURRENT_PARTITIONS,
        )
        await harness.drain(timeout_s=1200)
    await subscription.stop()
    return count, stage.report(name)


async def main() -> None:
    async with scratch_database(infra("DATABASE_URL"), prefix="ecowatt_bench") as db_url:
        await bench(db_url)


async def bench(db_url: str) -> None:
    bootstrap = infra("KAFKA_BOOTSTRAP_SERVERS")
    bus = KafkaBus(KafkaConnection(bootstrap_servers=bootstrap))
    await bus.start()
    harness: Harness | None = None
    print(
        f"devices {DEVICES}, points {3 * DEVICES}, frames per device {READINGS_PER_DEVICE}, "
        f"max_batch {MAX_BATCH}, concurrent partitions {CONCURRENT_PARTITIONS}, "
        f"credit codes {'shared' if SHARED_CREDIT_CODE else 'unique'}; "
        f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
    )
    try:
        harness = await Harness.start(bus, db_url)
        if harness.subscription is not None:  # the bench subscribes when data is in
            await harness.subscription.stop()
        snapshots = city()
        started = time.perf_counter()
        await harness.archive(snapshots, wait=False)
        await harness.view.wait_ready(600)
        while len(harness.view.all("point")) < 3 * DEVICES:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        print(f"archive: {len(snapshots)} snapshots in {time.perf_counter() - started:.1f}s")
        del snapshots
        await freeze_archive(harness.view)  # as the service does once its view is ready

        group = f"bench.bind.{uuid.uuid4().hex[:6]}"
        cold_n, cold_s = await bind_stage(harness, bus, group, range(1), "cold")
        steady_n, steady_s = 0, 0.0
        if READINGS_PER_DEVICE > 1:
            steady_n, steady_s = await bind_stage(
                harness, bus, group, range(1, READINGS_PER_DEVICE), "steady"
            )
        total = cold_n + steady_n
        print(
            f"binding all: {total} readings in {cold_s + steady_s:.2f}s = "
            f"{total / (cold_s + steady_s):,.0f} readings/s"
        )
        await cpu_stage(harness, max(READINGS_PER_DEVICE, 1))

        for run in ("day close", "day close re-run"):
            async with profiled(run.replace(" ", "-")):
                started = time.perf_counter()
                stats: dict[str, Any] = await harness.run_day(DAY)
                elapsed = time.perf_counter() - started
            print(
                f"{run}: {stats['points']} points, all daily rules in {elapsed:.1f}s; "
                f"hits {stats['hits']}, events {stats['events']}"
            )
        print(f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    finally:
        if harness is not None:
            await harness.stop()
        await bus.stop()


if __name__ == "__main__":
    asyncio.run(main())
