"""Consumer worker processes of a service for the multi-worker tests (`ECOWATT_*_WORKERS`).

`WorkerProcess` runs `python -m <module>` (a kernel `run_worker`) with its environment, waits
for its `ready` line and keeps its log lines; `held(group)` reads from them which partitions
the worker holds now (the bus logs every assignment). `committed_offsets` reads a group's
committed offsets without joining it, so a test can wait until every record published is
handled and committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from ecowatt_kernel.bus import KafkaBus

__all__ = [
    "WorkerProcess",
    "all_committed",
    "children_of",
    "committed_offsets",
    "infra_env",
    "wait_until",
]

_ASSIGNED = re.compile(r"group (\S+): partitions assigned: (.*)$")


class WorkerProcess:
    """One worker process and its log."""

    def __init__(
        self, module: str, env: Mapping[str, str], name: str, *, ready: str = "ready"
    ) -> None:
        """`ready`: the end of the line that says the process is ready."""
        self.module, self.env, self.name, self.ready = module, dict(env), name, ready
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._readers: list[asyncio.Task[None]] = []

    async def start(self, limit_s: float = 120.0) -> WorkerProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        ready = asyncio.Event()
        self._readers = [
            asyncio.create_task(self._read(self.process.stdout, ready)),
            asyncio.create_task(self._read(self.process.stderr, ready)),
        ]
        try:
            await asyncio.wait_for(ready.wait(), limit_s)
        except TimeoutError:
            raise AssertionError(
                f"{self.name} not ready in {limit_s:.0f} s:\n" + "\n".join(self.lines[-40:])
            ) from None
        return self

    async def _read(self, stream: asyncio.StreamReader, ready: asyncio.Event) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            self.lines.append(text)
            if text.endswith(self.ready):
                ready.set()

    def held(self, group: str) -> set[int] | None:
        """The partitions of `group`'s topic this worker was last assigned (None: none yet)."""
        for line in reversed(self.lines):
            match = _ASSIGNED.search(line)
            if match and match.group(1) == group:
                listed = match.group(2).strip()
                if listed == "none":
                    return set()
                return {int(tp.rsplit("/", 1)[1]) for tp in listed.split(", ")}
        return None

    def kill(self) -> None:
        """SIGKILL: no commit, no leaving the group (a crash)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        for reader in self._readers:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


def infra_env(*, kafka: str, database: str, redis: str, instance: str) -> dict[str, str]:
    """The environment of a service process on the test infrastructure (Kafka bus)."""
    return {
        **os.environ,
        "ECOWATT_ENVIRONMENT": "test",
        "ECOWATT_BUS_BACKEND": "kafka",
        "ECOWATT_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "ECOWATT_DATABASE_URL": database,
        "ECOWATT_REDIS_URL": redis,
        "ECOWATT_INSTANCE_ID": instance,
        "ECOWATT_LOG_LEVEL": "INFO",
        "ECOWATT_LOG_FORMAT": "text",
    }


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Committed offset per partition of `topic` in `group` (0 where none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        return {p: (await consumer.committed(TopicPartition(topic, p))) or 0 for p in partitions}
    finally:
        await consumer.stop()


async def all_committed(bus: KafkaBus, bootstrap: str, group: str, topic: str) -> bool:
    """True when `group` has committed every record published on `topic` so far."""
    ends = await bus.end_offsets(topic)
    return await committed_offsets(bootstrap, group, topic) == ends


async def wait_until(what: str, check: object, limit_s: float, *, every_s: float = 0.5) -> None:
    """Poll the coroutine function `check` until it returns something true."""
    deadline = time.monotonic() + limit_s
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {limit_s:.0f} s")
        await asyncio.sleep(every_s)
