"""Quick load test of the HJ 212 server (not the simulator-based bench).

    uv run python services/ingest-hj212/bench/load_ingest.py --devices 400 --seconds 20

1. creates private topics on the broker (frames, readings, commands, results, audit and a
   registry topic) and publishes `--devices` device snapshots (with a PW hash) to it;
2. starts the server in its own process (`python -m ecowatt_ingest.tcp`, uvloop);
3. starts `--clients` client processes; each device connection sends 2011 and 2051 frames
   in the default electricity profile and waits for the 9014 of each before the next (as
   devices do), counting a frame only once answered;
4. prints frames/s, ack latency percentiles measured by the clients, and checks that the
   number of records in the frames topic is at least the number of frames answered.

Needs KAFKA_BOOTSTRAP_SERVERS and REDIS_URL (as the tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import ecowatt_hj212 as hj212
from ecowatt_hj212 import frame_bytes
from ecowatt_kernel.bus import KafkaBus, KafkaConnection
from ecowatt_kernel.contracts import DeviceSnapshot, RegistryChange, TopicSpec, encode
from ecowatt_kernel.passwords import hash_password

TZ = ZoneInfo("Asia/Shanghai")
PW = "123456"


def segment_2011(mn: str, qn: str, data_time: str) -> bytes:
    profile = hj212.get_profile("ecowatt-default")
    q = hj212.Quantity
    cp = [("DataTime", data_time)]
    for circuit in (0, 1):
        for quantity, value in (
            (q.ACTIVE_POWER_KW, "41.27"),
            (q.ENERGY_TOTAL_KWH, "182734.6"),
            (q.POWER_FACTOR, "0.93"),
        ):
            key = profile.key_for(quantity, circuit)
            cp += [(key, value), (key.split("-")[0] + "-Flag", "N")]
    message = hj212.Message(cn="2011", qn=qn, st="31", pw=PW, mn=mn, flag=5, cp=tuple(cp))
    return hj212.encode(message)[6:-6]


def segment_2051(mn: str, qn: str, data_time: str) -> bytes:
    cp = [("DataTime", data_time)]
    for circuit in (1, 2):
        code = f"xe01{circuit:02d}"
        cp += [(f"{code}-Avg", "41.05"), (f"{code}-Min", "39.80"), (f"{code}-Max", "42.31")]
        cp += [(f"{code}-Flag", "N")]
        energy = f"xe02{circuit:02d}"
        cp += [(f"{energy}-Cou", "6.842"), (f"{energy}-Max", "182741.2"), (f"{energy}-Flag", "N")]
    message = hj212.Message(cn="2051", qn=qn, st="31", pw=PW, mn=mn, flag=5, cp=tuple(cp))
    return hj212.encode(message)[6:-6]


class DeviceProto(asyncio.Protocol):
    def __init__(self, client: Client, mn: str) -> None:
        self.client = client
        self.mn = mn
        self.framer = hj212.StreamFramer()
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.counter = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send_next()

    def send_next(self) -> None:
        if self.client.stopping or self.transport is None:
            return
        self.counter += 1
        now = datetime.now(TZ)
        qn = now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"
        data_time = now.strftime("%Y%m%d%H%M%S")
        build = segment_2051 if self.counter % 10 == 0 else segment_2011
        # a distinct QN per frame: millisecond time plus the counter in DataTime's place
        segment = build(self.mn, qn, data_time)
        frame = frame_bytes(segment)
        self.sent_at = time.perf_counter()
        self.transport.write(frame)

    def data_received(self, data: bytes) -> None:
        for event in self.framer.feed(data):
            if isinstance(event, hj212.RawFrame) and b"CN=9014" in event.data:
                self.client.latencies.append(time.perf_counter() - self.sent_at)
                self.client.answered.add(self.mn)
                self.send_next()


class Client:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.answered: set[str] = set()
        self.stopping = False


async def run_client(port: int, mns: list[str], seconds: float, warmup: float, out: str) -> None:
    client = Client()
    loop = asyncio.get_running_loop()
    for mn in mns:
        await loop.create_connection(lambda mn=mn: DeviceProto(client, mn), "127.0.0.1", port)
    # warm-up: every device has been answered once (its PW verified), then `warmup` seconds
    deadline = time.monotonic() + 120
    while len(client.answered) < len(mns) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    await asyncio.sleep(warmup)
    client.latencies.clear()
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    measured = list(client.latencies)
    elapsed = time.perf_counter() - started
    client.stopping = True
    await asyncio.sleep(2)  # let the last answers arrive
    result = json.dumps({"acked": len(measured), "elapsed": elapsed, "latencies": measured})
    await asyncio.to_thread(Path(out).write_text, result)


def client_main(port: int, mns: list[str], seconds: float, warmup: float, out: str) -> None:
    import uvloop

    uvloop.run(run_client(port, mns, seconds, warmup, out))


async def prepare(bootstrap: str, devices: int) -> tuple[dict[str, str], list[str]]:
    bus = KafkaBus(KafkaConnection(bootstrap_servers=bootstrap, client_id="load"), linger_ms=2)
    await bus.start()
    tag = uuid.uuid4().hex[:8]
    names = {
        "frames": f"load.{tag}.frames",
        "readings": f"load.{tag}.readings",
        "commands": f"load.{tag}.commands",
        "results": f"load.{tag}.results",
        "audit": f"load.{tag}.audit",
        "registry": f"load.{tag}.registry",
    }
    await bus.ensure_topics(
        [
            TopicSpec(names["frames"], "MN", "", partitions=12),
            TopicSpec(names["readings"], "MN", "", partitions=12),
            TopicSpec(names["commands"], "MN", "", partitions=2),
            TopicSpec(names["results"], "MN", "", partitions=2),
            TopicSpec(names["audit"], "actor", "", partitions=1),
            TopicSpec(names["registry"], "entity", "", partitions=3, compacted=True),
        ]
    )
    hashed = hash_password(PW)
    now = datetime.now(UTC)
    mns = [f"EWLOAD{tag.upper()}{i:010d}" for i in range(devices)]
    changes = [
        encode(
            RegistryChange(
                entity="device",
                entity_id=mn,
                operation="upsert",
                revision=1,
                changed_at=now,
                snapshot=DeviceSnapshot(
                    id=mn, mn=mn, updated_at=now, password_hash=hashed
                ).model_dump(mode="json"),
            ),
            topic=names["registry"],
        )
        for mn in mns
    ]
    await bus.publish(changes)
    await bus.stop()
    return names, mns


async def count_records(bootstrap: str, topic: str) -> int:
    bus = KafkaBus(KafkaConnection(bootstrap_servers=bootstrap, client_id="load-count"))
    return sum((await bus.end_offsets(topic)).values())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=400)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    args = parser.parse_args()
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    names, mns = asyncio.run(prepare(bootstrap, args.devices))
    env = {
        **os.environ,
        "ECOWATT_ENVIRONMENT": "test",
        "ECOWATT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ECOWATT_REDIS_URL": os.environ["REDIS_URL"],
        "ECOWATT_HJ212_HOST": "127.0.0.1",
        "ECOWATT_HJ212_PORT": "0",
        "ECOWATT_TOPIC_FRAMES": names["frames"],
        "ECOWATT_TOPIC_READINGS": names["readings"],
        "ECOWATT_TOPIC_COMMANDS": names["commands"],
        "ECOWATT_TOPIC_COMMAND_RESULTS": names["results"],
        "ECOWATT_TOPIC_AUDIT": names["audit"],
        "ECOWATT_TOPIC_REGISTRY": names["registry"],
        "ECOWATT_REDIS_PREFIX": f"load-{uuid.uuid4().hex[:6]}",
        "ECOWATT_INSTANCE_ID": "load",
        "ECOWATT_MAX_FRAMES_PER_S": "1000",
        "ECOWATT_FRAME_BURST": "1000",
        "ECOWATT_LOG_FORMAT": "text",
    }
    server = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            *(
                os.environ["LOAD_SERVER_PY"].split()
                if os.environ.get("LOAD_SERVER_PY")
                else ["-m", "ecowatt_ingest.tcp"]
            ),
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().split()
        port = int(line[1])
        random.shuffle(mns)
        shares = [mns[i :: args.clients] for i in range(args.clients)]
        scratch = Path(tempfile.mkdtemp(prefix="ingest-load-"))
        outs = [str(scratch / f"client-{i}.json") for i in range(args.clients)]
        procs = [
            multiprocessing.Process(
                target=client_main, args=(port, share, args.seconds, args.warmup, out)
            )
            for share, out in zip(shares, outs, strict=True)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        results = [json.loads(Path(out).read_text()) for out in outs]
        acked = sum(r["acked"] for r in results)
        elapsed = max(r["elapsed"] for r in results)
        latencies = [x for r in results for x in r["latencies"]]
        print(f"devices {args.devices}, clients {args.clients}, {elapsed:.1f} s measured")
        print(f"frames answered: {acked} = {acked / elapsed:,.0f} frames/s")
        if latencies:
            print(
                "ack latency ms: p50 {:.1f}  p90 {:.1f}  p99 {:.1f}  max {:.1f}".format(
                    *(percentile(latencies, p) * 1000 for p in (50, 90, 99, 100))
                )
            )
    finally:
        server.terminate()
        server.wait(30)
    stored = asyncio.run(count_records(bootstrap, names["frames"]))
    print(f"records in {names['frames']}: {stored} (>= every answered frame, warm-up included)")


if __name__ == "__main__":
    main()
