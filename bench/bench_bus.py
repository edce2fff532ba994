"""`make bench-bus`: produce and consume throughput of the bus, one process each way.

Through the real broker (KafkaBus: idempotent producer, acks=all, lz4, linger 5 ms) and
through the in-process backend. Messages are 1 KiB values (hex text of random bytes, so
compression gains about half) with 1,000 distinct keys, like device-keyed events.

    produce: N messages published by C concurrent publishers in calls of B messages; the
             clock stops when the last acknowledgement arrives.
    consume: a consumer group reads the N messages from the start, one handler call per
             partition batch, committing after each; the clock stops at the last commit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from ecowatt_kernel.bus import Bus, InProcessBus, KafkaBus, KafkaConnection, Message, Record
from ecowatt_kernel.contracts import TopicSpec
from infra_env import infra


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


async def run_backend(name: str, bus: Bus, count: int, partitions: int) -> dict[str, object]:
    await bus.start()
    try:
        topic = f"bench.bus.{uuid.uuid4().hex[:8]}"
        await bus.ensure_topics([TopicSpec(topic, "MN", "benchmark", partitions=partitions)])
        messages = payloads(count)
        await produce(bus, topic, messages[:2000], calls=500, concurrency=1)  # warm-up
        produce_s = await produce(bus, topic, messages, calls=1000, concurrency=8)
        total = count + 2000
        consume_s = await consume(bus, topic, total, max_batch=2000)
        return {
            "backend": name,
            "messages": count,
            "produce_msgs_per_s": round(count / produce_s),
            "produce_mib_per_s": round(count * 1024 / produce_s / 2**20, 1),
            "consume_msgs_per_s": round(total / consume_s),
            "consume_mib_per_s": round(total * 1024 / consume_s / 2**20, 1),
        }
    finally:
        await bus.stop()


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
    parser.add_argument("--backend", choices=["kafka", "memory", "both"], default="both")
    args = parser.parse_args()

    results = []
    if args.backend in ("kafka", "both"):
        kafka = KafkaBus(
            KafkaConnection(bootstrap_servers=infra("KAFKA_BOOTSTRAP_SERVERS"), client_id="bench"),
            max_in_flight=50_000,
        )
        results.append(await run_backend("kafka", kafka, args.messages, args.partitions))
    if args.backend in ("memory", "both"):
        memory = InProcessBus(max_lag=10_000_000, retain_unconsumed=10_000_000)
        results.append(await run_backend("in-process", memory, args.messages, args.partitions))

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
