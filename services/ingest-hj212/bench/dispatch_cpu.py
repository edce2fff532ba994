"""CPU per frame of the server's own path, without the broker, Redis or the network.

    uv run python services/ingest-hj212/bench/dispatch_cpu.py [--frames 50000] [--devices 20]

One process: an `IngestServer` whose bus accepts every publish at once (no Kafka), with
`--devices` registered devices (one PW hash) on in-memory connections (a transport that
drops what is written). Pre-encoded 2011 uploads of 4 circuits (40 codes, ≈ 900 bytes, as
`make bench-ingest` sends) are fed to the connections' `data_received` ten at a time, the
loop running between chunks so that the batched publisher completes and the 9014s are
"written". Reported: process CPU time per frame (framing, decode, door, verdict, the two
JSON envelopes, the publisher's bookkeeping, the answer) — a figure that stays comparable
on a loaded machine where frames/s does not, since it counts only this process's CPU. It
does not include the Kafka producer (lz4, request building) or the socket system calls.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import ecowatt_hj212 as hj212
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_ingest.connection import DeviceConnection
from ecowatt_ingest.server import IngestServer
from ecowatt_ingest.settings import IngestSettings
from ecowatt_kernel.bus import Message
from ecowatt_kernel.contracts import DeviceSnapshot, RegistryChange
from ecowatt_kernel.passwords import hash_password
from ecowatt_kernel.redis_client import create_redis
from ecowatt_kernel.registry_view import RegistryView

PW = "123456"


class AcceptingBus:
    """A bus that takes every publish at once (the server's path alone is measured)."""

    def __init__(self) -> None:
        self.published = 0

    async def publish(self, messages: Sequence[Message]) -> None:
        self.published += len(messages)


class NullTransport:
    """An in-memory transport: counts what the server writes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.written = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", self.port) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written += 1

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def frames_for(mn: str, count: int, start: datetime) -> list[bytes]:
    values = []
    for circuit in range(1, 5):
        for code, value in (("0101", "41.27"), ("0201", "18342.5"), ("0301", "0.93")):
            values += [
                (f"xe{code[:2]}{circuit:02d}-Rtd", value),
                (f"xe{code[:2]}{circuit:02d}-Flag", "N"),
            ]
        for phase in ("a", "b", "c"):
            values += [
                (f"xi{phase}{circuit:02d}-Rtd", "61.2"),
                (f"xu{phase}{circuit:02d}-Rtd", "230.1"),
            ]
    out = []
    for n in range(count):
        moment = start + timedelta(seconds=n)
        message = hj212.Message(
            cn="2011",
            qn=hj212_commands.new_qn(moment),
            st="31",
            pw=PW,
            mn=mn,
            flag=5,
            cp=(("DataTime", hj212.format_hj212_time(moment)), *values),
        )
        out.append(hj212.encode(message))
    return out


async def run(frames: int, devices: int, redis_url: str) -> dict[str, float]:
    now = datetime.now(UTC)
    view = RegistryView(topic="unused")
    hashed = hash_password(PW)
    mns = [f"EWCPU{i:019d}" for i in range(devices)]
    for revision, mn in enumerate(mns, start=1):
        snapshot = DeviceSnapshot(id=mn, mn=mn, updated_at=now, password_hash=hashed)
        view.apply(
            RegistryChange(
                entity="device",
                entity_id=mn,
                operation="upsert",
                revision=revision,
                changed_at=now,
                snapshot=snapshot.model_dump(mode="json"),
            )
        )
    settings = IngestSettings(
        environment="test",
        max_frames_per_s=10_000_000,
        frame_burst=10_000_000,
        max_unacked_per_connection=100_000,
        backfill_enabled=False,
        raise_nofile=False,
    )
    bus = AcceptingBus()
    redis = create_redis(redis_url)  # not used: the Redis loops are not started
    server = IngestServer(settings, bus=bus, redis=redis, registry=view)  # type: ignore[arg-type]
    host = getattr(server, "dispatcher", server)  # (the server before its split was the host)
    local = datetime.now().replace(microsecond=0)
    per_device = frames // devices
    streams = {mn: frames_for(mn, per_device + 1, local) for mn in mns}
    connections = []
    for index, mn in enumerate(mns):
        conn = DeviceConnection(host)
        transport = NullTransport(10_000 + index)
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(streams[mn][0])  # first frame: the PW check, then bound
        connections.append((conn, transport))
    for _ in range(500):
        await asyncio.sleep(0.01)
        if all(t.written for _, t in connections):
            break
    await server.publisher.drain()
    chunks = []
    for start in range(1, per_device + 1, 10):
        for (conn, _), mn in zip(connections, mns, strict=True):
            chunks.append((conn, b"".join(streams[mn][start : start + 10])))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for index, (conn, data) in enumerate(chunks):
        conn.data_received(data)
        if index % devices == devices - 1:
            await asyncio.sleep(0)
    await server.publisher.drain()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    answered = sum(t.written for _, t in connections) - devices
    await redis.aclose()
    return {"frames": per_device * devices, "answered": answered, "cpu_s": cpu, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    result = asyncio.run(run(args.frames, args.devices, args.redis_url))
    per = result["cpu_s"] / result["frames"] * 1e6
    print(
        f"{result['frames']:,} frames ({result['answered']:,} answered) in"
        f" {result['cpu_s']:.2f} s CPU / {result['wall_s']:.2f} s wall: {per:.1f} µs CPU per"
        f" frame"
    )


if __name__ == "__main__":
    main()
