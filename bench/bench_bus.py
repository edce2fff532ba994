"""`make bench-bus`: produce and consume throughput of the bus, one process each way.

Through the real broker (KafkaBus: idempotent producer, acks=all, lz4, linger 5 ms),
through the in-process backend and through the durable in-process backend (DiskBus: write-
ahead journal, group commit, fdatasync; its folder in `--disk-dir`, default a temporary
folder next to the repository's `.data`). Messages are 1 KiB values (hex text of random
bytes, so compression gains about half) with 1,000 distinct keys, like device-keyed events.

    produce: N messages published by C concurrent publishers in calls of B messages; the
             clock stops when the last acknowledgement arrives.
    small:   publish latency of calls of 20 messages from 8 concurrent publishers (what
             ingest does at a low frame rate), on the fresh topic before the bulk produce
             (consumers keeping up: little retained): p50 and p99 of one call.
    consume: a consumer group reads the N messages from the start, one handler call per
             partition batch, committing after each; the clock stops at the last commit.

`--backend postgres` measures the other way DiskBus could have been built — a table in
PostgreSQL (the server of `make infra-up`, a scratch database): each publish call is one
transaction that COPYs its rows (topic, partition, offset, timestamp, key, value) into an
indexed table and commits (synchronous_commit on, as durability needs). Produce and small
only: it is the write path that decides the choice (docs/benchmarks.md, Bus).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from ecowatt_kernel.bus import (
    Bus,
    DiskBus,
    InProcessBus,
    KafkaBus,
    KafkaConnection,
    Message,
    Record,
)
from ecowatt_kernel.bus.partitioner import partition_for_key
from ecowatt_kernel.contracts import TopicSpec
from ecowatt_kernel.db import scratch_database
from infra_env import infra

ROOT = Path(__file__).resolve().parent.parent


def payloads(count: int) -> list[Message]:
    value = os.urandom(512).hex().encode()  # 1 KiB
    return [
        Message(topic="", key=f"MN{i % 1000:06d}".encode(), value=value[:-8] + f"{i:08d}".encode())
        for i in range(count)
    ]


async def produce(
    bus: Bus, topic: str, messages: list[Message], *, calls: int, concurrency: int
) -> float:
    batches = [
        [Message(topic, m.key, m.value) for m in messages[i : i + calls]]
        for i in range(0, len(messages), calls)
    ]
    queue: asyncio.Queue[list[Message]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def worker() -> None:
        while not queue.empty():
            await bus.publish(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def consume(bus: Bus, topic: str, expected: int, max_batch: int) -> float:
    seen = 0
    done = asyncio.Event()
    first: list[float] = []

    async def handler(records: Sequence[Record]) -> None:
        nonlocal seen
        if not first:
            first.append(time.perf_counter())
        seen += len(records)
        if seen >= expected:
            done.set()

    started = time.perf_counter()
    subscription = await bus.subscribe(
        group=f"bench-{uuid.uuid4().hex[:8]}", topics=[topic], handler=handler, max_batch=max_batch
    )
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    await subscription.stop()
    return elapsed


async def small_calls(bus: Bus, topic: str, calls: int = 400, size: int = 20) -> dict[str, float]:
    """p50/p99 of publish calls of `size` messages from 8 concurrent publishers."""
    value = os.urandom(512).hex().encode()
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(calls):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            batch = [
                Message(topic, f"MN{(i * size + j) % 1000:06d}".encode(), value)
                for j in range(size)
            ]
            started = time.perf_counter()
            await bus.publish(batch)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(8)))
    latencies.sort()
    return {
        "small_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "small_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


async def run_backend(name: str, bus: Bus, count: int, partitions: int) -> dict[str, object]:
    await bus.start()
    try:
        topic = f"bench.bus.{uuid.uuid4().hex[:8]}"
        await bus.ensure_topics([TopicSpec(topic, "MN", "benchmark", partitions=partitions)])
        messages = payloads(count)
        await produce(bus, topic, messages[:2000], calls=500, concurrency=1)  # warm-up
        small = await small_calls(bus, topic)
        produce_s = await produce(bus, topic, messages, calls=1000, concurrency=8)
        total = count + 2000 + 400 * 20
        consume_s = await consume(bus, topic, total, max_batch=2000)
        return {
            "backend": name,
            "messages": count,
            "produce_msgs_per_s": round(count / produce_s),
            "produce_mib_per_s": round(count * 1024 / produce_s / 2**20, 1),
            **small,
            "consume_msgs_per_s": round(total / consume_s),
            "consume_mib_per_s": round(total * 1024 / consume_s / 2**20, 1),
        }
    finally:
        await bus.stop()


class PostgresLog:
    """Just enough of a bus on a PostgreSQL table to time its write path (see the module
    docstring): `publish` = one transaction COPYing the call's rows, then commit."""

    def __init__(self, url: str, partitions: int) -> None:
        self.url = url
        self.partitions = partitions
        self.next: dict[tuple[str, int], int] = {}
        self.pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(self.url, min_size=8, max_size=8)
        async with self.pool.acquire() as connection:
            await connection.execute(
                'CREATE TABLE bus_log (topic text, partition int, "offset" bigint,'
                ' ts bigint, key bytea, value bytea, PRIMARY KEY (topic, partition, "offset"))'
            )

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def ensure_topics(self, specs: list[TopicSpec]) -> None:
        return None

    async def publish(self, messages: list[Message]) -> None:
        assert self.pool is not None
        now = int(time.time() * 1000)
        rows = []
        for m in messages:
            partition = partition_for_key(m.key or b"", self.partitions)
            offset = self.next.get((m.topic, partition), 0)
            self.next[(m.topic, partition)] = offset + 1
            rows.append((m.topic, partition, offset, now, m.key, m.value))
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.copy_records_to_table("bus_log", records=rows)


async def run_postgres(count: int, partitions: int) -> dict[str, object]:
    async with scratch_database(infra("DATABASE_URL")) as url:
        log = PostgresLog(url.replace("postgresql+asyncpg://", "postgresql://"), partitions)
        await log.start()
        try:
            topic = "bench.bus.pg"
            messages = payloads(count)
            await produce(log, topic, messages[:2000], calls=500, concurrency=1)  # type: ignore[arg-type]
            small = await small_calls(log, topic)  # type: ignore[arg-type]
            produce_s = await produce(log, topic, messages, calls=1000, concurrency=8)  # type: ignore[arg-type]
            return {
                "backend": "postgres-table (write path only)",
                "messages": count,
                "produce_msgs_per_s": round(count / produce_s),
                "produce_mib_per_s": round(count * 1024 / produce_s / 2**20, 1),
                **small,
            }
        finally:
            await log.stop()


def machine() -> str:
    memory_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return (
        f"{os.cpu_count()} cores, {memory_kib / 2**20:.0f} GiB, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument(
        "--backend",
        default="kafka,memory,disk",
        help="comma-separated: kafka, memory, disk, postgres (default kafka,memory,disk)",
    )
    parser.add_argument("--disk-dir", type=Path, default=None, help="folder of the DiskBus run")
    args = parser.parse_args()
    backends = set(args.backend.split(","))

    results = []
    if "kafka" in backends:
        kafka = KafkaBus(
            KafkaConnection(bootstrap_servers=infra("KAFKA_BOOTSTRAP_SERVERS"), client_id="bench"),
            max_in_flight=50_000,
        )
        results.append(await run_backend("kafka", kafka, args.messages, args.partitions))
    if "memory" in backends:
        memory = InProcessBus(max_lag=10_000_000, retain_unconsumed=10_000_000)
        results.append(await run_backend("in-process", memory, args.messages, args.partitions))
    if "disk" in backends:
        (ROOT / ".data").mkdir(exist_ok=True)
        folder = args.disk_dir or Path(tempfile.mkdtemp(prefix="bench-bus-", dir=ROOT / ".data"))
        try:
            disk = DiskBus(folder, max_lag=10_000_000, retain_unconsumed=10_000_000)
            results.append(
                await run_backend("disk (DiskBus)", disk, args.messages, args.partitions)
            )
        finally:
            if args.disk_dir is None:
                shutil.rmtree(folder, ignore_errors=True)
    if "postgres" in backends:
        results.append(await run_postgres(args.messages, args.partitions))

    print(
        json.dumps(
            {
                "date": datetime.now(UTC).date().isoformat(),
                "machine": machine(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
