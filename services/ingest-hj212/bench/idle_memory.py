"""Memory per idle connection: RSS of the server process before and after N connections.

    uv run python services/ingest-hj212/bench/idle_memory.py --connections 19800 [--bind]

Starts `python -m ecowatt_ingest.tcp` (Kafka and Redis from KAFKA_BOOTSTRAP_SERVERS and
REDIS_URL, private topics and Redis prefix), opens the connections from this process, and
reads the server's RSS from /proc. With `--bind` every connection first sends one 2011
frame and waits for its answer, so each holds a device session too: the devices are
registered without a PW and the server runs the `lenient` policy, which binds them on their
MN alone (no scrypt per device; an unregistered MN no longer binds a session). Every
process raises RLIMIT_NOFILE as far as it may; where the hard limit is 20,000 (as on the
development machines) the server can hold a little under 20,000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import ecowatt_hj212 as hj212
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_kernel.bus import KafkaBus, KafkaConnection
from ecowatt_kernel.contracts import DeviceSnapshot, RegistryChange, TopicSpec, encode

MN_PREFIX = "EWIDLE"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_nofile(want: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def mn_of(index: int) -> str:
    return f"{MN_PREFIX}{index:018d}"


async def topics(bootstrap: str, devices: int) -> dict[str, str]:
    """Private topics, with `devices` devices registered without a PW (for `--bind`)."""
    bus = KafkaBus(KafkaConnection(bootstrap_servers=bootstrap, client_id="idle"))
    tag = uuid.uuid4().hex[:8]
    names = {
        k: f"idle.{tag}.{k}" for k in ("frames", "readings", "commands", "results", "registry")
    }
    await bus.ensure_topics(
        [TopicSpec(n, "MN", "", partitions=3, compacted=k == "registry") for k, n in names.items()]
    )
    if devices:
        await bus.start()
        now = datetime.now(UTC)
        changes = [
            encode(
                RegistryChange(
                    entity="device",
                    entity_id=mn_of(i),
                    operation="upsert",
                    revision=1,
                    changed_at=now,
                    snapshot=DeviceSnapshot(id=mn_of(i), mn=mn_of(i), updated_at=now).model_dump(
                        mode="json"
                    ),
                ),
                topic=names["registry"],
            )
            for i in range(devices)
        ]
        for start in range(0, len(changes), 5000):
            await bus.publish(changes[start : start + 5000])
        await bus.stop()
    return names


async def connect_all(port: int, count: int, bind: bool) -> list[tuple[object, object]]:
    held = []
    for start in range(0, count, 500):
        batch = [asyncio.open_connection("127.0.0.1", port) for _ in range(min(500, count - start))]
        held.extend(await asyncio.gather(*batch))
    if bind:

        async def one(
            index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            message = hj212.Message(
                cn="2011",
                qn=hj212_commands.new_qn(),
                st="31",
                pw="123456",
                mn=mn_of(index),
                flag=5,
                cp=(("DataTime", "20261126084500"), ("xe0101-Rtd", "41.2")),
            )
            writer.write(hj212.encode(message))
            await reader.readuntil(b"\r\n")

        for start in range(0, count, 1000):
            await asyncio.gather(
                *(one(i, *held[i]) for i in range(start, min(start + 1000, count)))  # type: ignore[arg-type]
            )
    return held


def hold(port: int, count: int, *, bind: bool) -> None:
    """Client process: open `count` connections, report, keep them until stdin says so."""
    raise_nofile(count + 256)

    async def run() -> None:
        held = await connect_all(port, count, bind)
        print(f"held {len(held)}", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=19_800)
    parser.add_argument("--bind", action="store_true")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--hold", nargs=2, type=int, metavar=("PORT", "COUNT"), help="internal")
    args = parser.parse_args()
    if args.hold:
        hold(*args.hold, bind=args.bind)
        return
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    names = asyncio.run(topics(bootstrap, args.connections if args.bind else 0))
    env = {
        **os.environ,
        "ECOWATT_ENVIRONMENT": "test",
        "ECOWATT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ECOWATT_REDIS_URL": os.environ["REDIS_URL"],
        "ECOWATT_HJ212_HOST": "127.0.0.1",
        "ECOWATT_HJ212_PORT": "0",
        "ECOWATT_MAX_CONNECTIONS": str(args.connections + 100),
        "ECOWATT_TOPIC_FRAMES": names["frames"],
        "ECOWATT_TOPIC_READINGS": names["readings"],
        "ECOWATT_TOPIC_COMMANDS": names["commands"],
        "ECOWATT_TOPIC_COMMAND_RESULTS": names["results"],
        "ECOWATT_TOPIC_REGISTRY": names["registry"],
        "ECOWATT_REDIS_PREFIX": f"idle-{uuid.uuid4().hex[:6]}",
        "ECOWATT_INSTANCE_ID": "idle",
        "ECOWATT_BACKFILL_ENABLED": "false",
        "ECOWATT_DEVICE_POLICY": "lenient",
        "ECOWATT_LOG_FORMAT": "text",
        "ECOWATT_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "ecowatt_ingest.tcp"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        time.sleep(2)
        before = rss_kib(server.pid)

        # several client processes: each process's own RLIMIT_NOFILE caps what it can hold
        shares = [args.connections // args.clients] * args.clients
        shares[0] += args.connections - sum(shares)
        clients = [
            subprocess.Popen(  # noqa: S603
                [sys.executable, __file__, "--hold", str(port), str(share)]
                + (["--bind"] if args.bind else []),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for share in shares
        ]
        opened = 0
        for client in clients:
            assert client.stdout is not None
            opened += int(client.stdout.readline().split()[1])
        time.sleep(3)  # the server has accepted everything; session state flushed
        after = rss_kib(server.pid)
        for client in clients:
            assert client.stdin is not None
            client.stdin.write("done\n")
            client.stdin.flush()
            client.wait(60)
        per = (after - before) * 1024 / opened
        kind = "bound to a session (one frame each)" if args.bind else "idle, never sent"
        print(
            f"{opened} connections ({kind}): server RSS {before} KiB -> {after} KiB,"
            f" {per:,.0f} bytes per connection"
        )
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
