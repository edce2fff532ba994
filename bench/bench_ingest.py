"""`make bench-ingest`: the HJ 212 ingest server under simulated devices, separate processes.

The ingest server runs alone in its process (`python -m ecowatt_ingest.tcp`, uvloop, real
Kafka broker, Redis, private topics and Redis prefix); the devices are the simulator
(`python -m ecowatt_simulator`) in other processes (`--shard i/n`), registered first on a
private registry topic (one PW for the whole fleet, so registration costs one scrypt).

1. **throughput** — closed loop (`--fast`: every device sends its next upload once answered,
   at most `--window` unanswered): acked frames/s between the first and last stats lines,
   and the device-side ack latency (write -> 9014) p50/p90/p99 from the simulators'
   histograms. Then **paced** — open loop at a fixed offered rate (`--speed`), for the
   latency below saturation.
2. **outage** — a private broker (tools/infra.py relocated, like the outage tests), paced
   load, the broker stopped for `--outage-s` seconds and started again; nothing may be lost.
3. **idle memory** — a fresh server, `--idle-connections` devices connect (each sends one
   upload, which binds its session, then holds the link): server RSS before and after.
4. **standalone** — the same closed loop against the server on standalone's in-process bus:
   memory-only (`ECOWATT_BUS_BACKEND=memory`) and then durable (`disk`: write-ahead journal,
   group commit, fdatasync, in `--scratch`). The devices are not registered on that bus
   (lenient policy: `unregistered`, answered and published alike in both runs). The durable
   run's journal is read back afterwards: every answered upload must be in it.
5. **archive** — the frame archive's consumer (`ArchiveWriter`: parse, zlib, COPY, merge)
   writing a day of frames of `--archive-mns` devices (one a minute, as a meter's 2011) into
   a scratch database on the `make infra-up` PostgreSQL, then the API's queries for one MN
   and that day: the first page of 500 with its total, and the whole day in arrival order
   (what the text download reads).

Zero loss, checked exactly after every load run: no upload unanswered (`unacked` = 0), and
the frames topic, read whole, holds every upload the devices sent as `accepted`, processed
once: the set of (MN, QN) of accepted upload records has exactly acked = ack_requested
members, each with one frame id (a device's re-send is recorded as `duplicate`; a publish
retried after a broker failure may store a record twice with the same frame id, counted
as `republished`), and no `rejected` record; and the readings topic, read whole, holds one
`telemetry.reading` for every accepted data upload (2011/2021/2031/2041/2051/2061) and
nothing else: the set of idempotency keys (MN|CN|DataTime) of the readings equals that of
the accepted data uploads (the parts of a split upload give one reading together), each
with one frame id (a republished copy aside).

`--workers N` runs the server as N worker processes on one port (`ECOWATT_INGEST_WORKERS`);
the ingest CPU figures then add up the supervisor and every worker.

    uv run python bench/bench_ingest.py [--only throughput,paced,idle,outage,standalone,archive]
        [--profile] [--workers N]

Needs the servers of `make infra-up` (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL or .infra/env).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import ecowatt_hj212 as hj212
from aiokafka import AIOKafkaConsumer, TopicPartition
from ecowatt_ingest.archive.service import (
    ArchiveWriter,
    FrameFilters,
    frame_view,
    iter_frames,
    list_frames,
)
from ecowatt_ingest.dispatch import DATA_CNS
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.wire import frame_message, new_trace_id
from ecowatt_kernel.bus import KafkaBus, KafkaConnection, Record
from ecowatt_kernel.bus.segment import read_segment
from ecowatt_kernel.contracts import TopicSpec
from ecowatt_kernel.db import Database, scratch_database
from ecowatt_kernel.pagination import PageRequest
from ecowatt_simulator import Fleet, LatencyHistogram, publish_fleet
from infra_env import infra
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
PW = "123456"
UPLOAD_ANSWERS = ("9011", "9012", "9013", "9014")
PY_SPY = str(Path(sys.executable).parent / "py-spy")
_DATA_TIME = re.compile(rb"DataTime=([^;,&]*)")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def log(text: str) -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------------- setup
@dataclass
class Names:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def topic(self, kind: str) -> str:
        return f"bench.ingest.{self.tag}.{kind}"

    def env(self) -> dict[str, str]:
        return {
            "ECOWATT_TOPIC_FRAMES": self.topic("frames"),
            "ECOWATT_TOPIC_READINGS": self.topic("readings"),
            "ECOWATT_TOPIC_COMMANDS": self.topic("commands"),
            "ECOWATT_TOPIC_COMMAND_RESULTS": self.topic("results"),
            "ECOWATT_TOPIC_AUDIT": self.topic("audit"),
            "ECOWATT_TOPIC_REGISTRY": self.topic("registry"),
            "ECOWATT_REDIS_PREFIX": f"bench-ingest-{self.tag}",
            "ECOWATT_INSTANCE_ID": f"bench-{self.tag}",
        }


async def prepare(bootstrap: str, names: Names, devices: int, city_seed: int) -> None:
    """Private topics, and a synthetic fleet of `devices` registered on the registry topic."""
    bus = KafkaBus(KafkaConnection(bootstrap_servers=bootstrap, client_id="bench-ingest"))
    await bus.start()
    try:
        await bus.ensure_topics(
            [
                TopicSpec(names.topic("frames"), "MN", "", partitions=12),
                TopicSpec(names.topic("readings"), "MN", "", partitions=12),
                TopicSpec(names.topic("commands"), "MN", "", partitions=2),
                TopicSpec(names.topic("results"), "MN", "", partitions=2),
                TopicSpec(names.topic("audit"), "actor", "", partitions=1),
            ]
        )
        fleet = fleet_of(devices, city_seed)
        await publish_fleet(bus, fleet, topic=names.topic("registry"))
    finally:
        await bus.stop()


def fleet_of(devices: int, city_seed: int) -> Fleet:
    """What `ecowatt-simulator --synthetic-devices N --city-seed S --password PW` builds."""
    return Fleet.synthetic(
        devices, circuits=4, seed=city_seed, city_seed=city_seed, password=PW, rtd_interval_s=60
    )


class Ingest:
    """`python -m ecowatt_ingest.tcp` in its own process."""

    def __init__(self, bootstrap: str, redis_url: str, names: Names, **extra: str) -> None:
        self.env = {
            **os.environ,
            "ECOWATT_ENVIRONMENT": "test",
            "ECOWATT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ECOWATT_REDIS_URL": redis_url,
            "ECOWATT_HJ212_HOST": "127.0.0.1",
            "ECOWATT_HJ212_PORT": "0",
            "ECOWATT_LOG_FORMAT": "text",
            "ECOWATT_LOG_LEVEL": "WARNING",
            # simulated devices in fast mode send far above a logger's rate
            "ECOWATT_MAX_FRAMES_PER_S": "100000",
            "ECOWATT_FRAME_BURST": "100000",
            **names.env(),
            **extra,
        }
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> Ingest:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ecowatt_ingest.tcp"],
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            raise SystemExit(f"ingest did not start: {line}")
        self.port = int(line[1])
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu_s(self) -> float:
        """CPU seconds of the server and its worker processes (when it supervises some)."""
        stats: dict[int, list[str]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        tree, ticks = {self.pid}, 0
        for pid, fields in stats.items():  # the workers are the server's children
            if pid == self.pid or int(fields[1]) in tree:
                tree.add(pid)
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass
class SimRun:
    """Simulator shards in their own processes; their summaries and stats lines."""

    port: int
    devices: int
    shards: int
    city_seed: int
    options: list[str]
    scratch: Path
    summaries: list[dict[str, Any]] = field(default_factory=list)
    stats: list[list[dict[str, Any]]] = field(default_factory=list)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self) -> SimRun:
        for index in range(self.shards):
            err = (self.scratch / f"sim-{index}.err").open("w")
            self.processes.append(
                subprocess.Popen(  # noqa: S603 - the simulator, our own module
                    [
                        sys.executable,
                        "-m",
                        "ecowatt_simulator",
                        "--target",
                        f"127.0.0.1:{self.port}",
                        "--synthetic-devices",
                        str(self.devices),
                        "--password",
                        PW,
                        "--city-seed",
                        str(self.city_seed),
                        "--shard",
                        f"{index}/{self.shards}",
                        "--counts-only",
                        *self.options,
                    ],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                )
            )
        return self

    def wait(self, timeout_s: float = 900) -> SimRun:
        for index, process in enumerate(self.processes):
            out, _ = process.communicate(timeout=timeout_s)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if process.returncode != 0 or not lines:
                err = (self.scratch / f"sim-{index}.err").read_text()[-3000:]
                raise SystemExit(f"simulator shard {index} failed:\n{err}")
            self.summaries.append(json.loads(lines[-1]))
            stats = []
            for line in (self.scratch / f"sim-{index}.err").read_text().splitlines():
                with contextlib.suppress(ValueError):
                    item = json.loads(line)
                    if isinstance(item, dict) and "wall_s" in item:
                        stats.append(item)
            self.stats.append(stats)
        return self

    def total(self, key: str) -> int:
        return sum(int(s.get(key) or 0) for s in self.summaries)

    def latency(self) -> LatencyHistogram:
        merged = LatencyHistogram()
        for summary in self.summaries:
            merged.merge(LatencyHistogram.from_json(summary["ack_latency"]))
        return merged

    def steady_rate(self, skip_s: float = 3.0) -> tuple[float, float]:
        """Acked frames/s over the window every shard reported (first `skip_s` s left out)."""
        start = skip_s
        end = min(s[-1]["wall_s"] for s in self.stats if s) - 1.0
        if end <= start:
            start, end = 0.0, end + 1.0
        acked = 0.0
        for series in self.stats:
            acked += _at(series, end) - _at(series, start)
        return acked / (end - start), end - start


def _at(series: list[dict[str, Any]], t: float) -> float:
    """Acked count at wall time `t` (linear between stats lines)."""
    before = {"wall_s": 0.0, "acked": 0}
    for item in series:
        if item["wall_s"] >= t:
            span = item["wall_s"] - before["wall_s"]
            share = (t - before["wall_s"]) / span if span else 1.0
            return float(before["acked"] + share * (item["acked"] - before["acked"]))
        before = item
    return float(before["acked"])


@dataclass
class TopicCount:
    """What the frames topic holds, read whole."""

    records: Counter[tuple[str, str]] = field(default_factory=Counter)  # (verdict, kind)
    uploads: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    """(MN, QN) of accepted uploads -> their frame ids (one id: processed once)."""
    data_keys: set[str] = field(default_factory=set)
    """MN|CN|DataTime of the accepted uploads that carry data (one reading each)."""

    @property
    def republished(self) -> int:
        """Accepted upload records beyond one per upload, with the same frame id: a publish
        retried after an unknown outcome (at least once), not a frame processed twice."""
        return self.records[("accepted", "upload")] - len(self.uploads)

    @property
    def processed_twice(self) -> int:
        return sum(1 for ids in self.uploads.values() if len(ids) > 1)


async def read_whole(bootstrap: str, topic: str) -> AsyncIterator[dict[str, Any]]:
    """The `data` of every envelope on `topic`, from the start to its end now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(timeout_ms=1000, max_records=20000)
            for tp, records in batches.items():
                for record in records:
                    yield json.loads(record.value)["data"]
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str) -> TopicCount:
    count = TopicCount()
    async for data in read_whole(bootstrap, topic):
        kind = "answer" if data["cn"] in UPLOAD_ANSWERS else "upload"
        count.records[(data["verdict"], kind)] += 1
        if kind == "upload" and data["verdict"] == "accepted":
            key = (data["mn"], data["qn"])
            count.uploads.setdefault(key, set()).add(data["frame_id"])
            if data["cn"] in DATA_CNS:
                found = _DATA_TIME.search(base64.b64decode(data["raw"]))
                moment = found.group(1).decode() if found else ""
                count.data_keys.add(f"{data['mn']}|{data['cn']}|{moment}")
    return count


async def read_readings(bootstrap: str, topic: str) -> dict[str, list[str]]:
    """Idempotency key of every `telemetry.reading` on the topic -> each copy's frame id."""
    readings: dict[str, list[str]] = {}
    async for data in read_whole(bootstrap, topic):
        readings.setdefault(data["idempotency_key"], []).append(data["frame_id"])
    return readings


async def check_loss(
    bootstrap: str, topic: str, run: SimRun, readings_topic: str | None = None
) -> dict[str, Any]:
    """The exact zero-loss check (module docstring); raises when it fails."""
    count = await read_topic(bootstrap, topic)
    requested, acked = run.total("ack_requested"), run.total("acked")
    records = count.records
    duplicates = records[("duplicate", "upload")] + records[("duplicate", "answer")]
    rejected = records[("rejected", "upload")] + records[("rejected", "answer")]
    result = {
        "ack_requested": requested,
        "acked": acked,
        "unacked": run.total("unacked"),
        "accepted_uploads_in_topic": len(count.uploads),
        "processed_twice": count.processed_twice,
        "republished_records": count.republished,
        "duplicate_records": duplicates,
        "rejected_records": rejected,
        "device_resends": run.total("resends"),
        "topic_records": sum(records.values()),
    }
    ok = (
        run.total("unacked") == 0
        and requested == acked == len(count.uploads)
        and count.processed_twice == 0
        and rejected == 0
    )
    if readings_topic is not None:
        readings = await read_readings(bootstrap, readings_topic)
        result["data_keys"] = len(count.data_keys)
        result["readings"] = sum(map(len, readings.values()))
        result["readings_missing"] = len(count.data_keys - readings.keys())
        result["readings_unexpected"] = len(readings.keys() - count.data_keys)
        result["readings_twice"] = sum(1 for ids in readings.values() if len(set(ids)) > 1)
        ok = ok and readings.keys() == count.data_keys and result["readings_twice"] == 0
    result["zero_loss"] = ok
    if not ok:
        raise SystemExit(f"LOSS CHECK FAILED: {result}")
    return result


def start_profiler(pid: int, out: Path, seconds: int = 15) -> subprocess.Popen[bytes]:
    """py-spy (the dev group's): raw stacks of every thread of `pid` and, with several
    workers, of its worker processes (`--subprocesses`) for `seconds`, 250 samples/s."""
    command = [PY_SPY, "record", "-p", str(pid), "-d", str(seconds), "-r", "250"]
    command += ["--subprocesses"]
    command += ["-f", "raw", "-o", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


# ------------------------------------------------------------------------------- phases
async def throughput(args: argparse.Namespace, env: dict[str, str], scratch: Path) -> None:
    bootstrap, redis_url = env["KAFKA_BOOTSTRAP_SERVERS"], env["REDIS_URL"]
    for mode in [m for m in ("throughput", "paced") if m in args.only]:
        names = Names()
        await prepare(bootstrap, names, args.devices, args.city_seed)
        ingest = Ingest(
            bootstrap, redis_url, names, ECOWATT_INGEST_WORKERS=str(args.workers)
        ).start()
        profiler = None
        if mode == "throughput":
            options = ["--fast", "--duration", args.fast_duration, "--window", str(args.window)]
            offered = None
        else:
            speed = args.paced_rate / (args.devices * (1 / 60 + 1 / 600 + 1 / 3600))
            options = ["--speed", f"{speed:.1f}", "--duration", f"{int(speed * args.paced_s)}s"]
            offered = args.paced_rate
        options += ["--sample-s", "60", "--stats-every", "1", "--drain-timeout", "120"]
        cpu0, began = ingest.cpu_s(), time.monotonic()
        run = SimRun(ingest.port, args.devices, args.shards, args.city_seed, options, scratch)
        run.start()
        if args.profile and mode == "throughput" and shutil.which(PY_SPY):
            await asyncio.sleep(5.0)  # past the start (connections, the one PW check)
            profiler = start_profiler(ingest.pid, scratch / "ingest-profile.txt")
        run.wait()
        wall = time.monotonic() - began
        cpu = ingest.cpu_s() - cpu0
        ingest.stop()
        if profiler is not None:
            profiler.wait(60)
            log(f"  profile (py-spy raw stacks): {scratch / 'ingest-profile.txt'}")
        rate, window = run.steady_rate()
        lat = run.latency()
        loss = await check_loss(
            bootstrap, names.topic("frames"), run, readings_topic=names.topic("readings")
        )
        ms = [lat.quantile(q) or math.nan for q in (0.5, 0.9, 0.99)]
        label = "closed loop" if offered is None else f"paced at {offered:,} frames/s offered"
        log(
            f"{mode}: {args.devices} devices x 4 circuits, {args.shards} simulator processes,"
            f" {label}, window {args.window if offered is None else '8'}"
        )
        log(
            f"  acked {run.total('acked'):,} frames in {wall:.0f} s; steady {rate:,.0f} acked"
            f" frames/s over {window:.0f} s; ack latency p50 {ms[0] * 1e3:.1f} ms,"
            f" p90 {ms[1] * 1e3:.1f} ms, p99 {ms[2] * 1e3:.1f} ms ({lat.count:,} answers)"
        )
        per_frame = cpu / max(run.total("acked"), 1) * 1e6
        log(
            f"  ingest CPU {cpu / wall:.0%} of one core ({args.workers} worker(s)),"
            f" {per_frame:.0f} µs CPU per acked frame; load average {load_average()};"
            f" zero loss: {loss['zero_loss']} {json.dumps(loss)}"
        )


async def idle_memory(args: argparse.Namespace, env: dict[str, str], scratch: Path) -> None:
    bootstrap, redis_url = env["KAFKA_BOOTSTRAP_SERVERS"], env["REDIS_URL"]
    names = Names()
    count = args.idle_connections
    await prepare(bootstrap, names, count, args.city_seed)
    ingest = Ingest(bootstrap, redis_url, names, ECOWATT_MAX_CONNECTIONS=str(count + 100)).start()
    try:
        await asyncio.sleep(3.0)
        before, fds_before = ingest.rss_kib(), ingest.fds()
        shards = max(1, math.ceil(count / 5000))
        hold = 30 + count // 1000
        run = SimRun(
            ingest.port,
            count,
            shards,
            args.city_seed,
            ["--idle", "--duration", str(hold), "--connect-rate", "1500", "--circuits", "1"],
            scratch,
        ).start()
        deadline = time.monotonic() + hold - 5
        peak_fds = 0
        while time.monotonic() < deadline:
            peak_fds = max(peak_fds, ingest.fds())
            if peak_fds - fds_before >= count:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(5.0)  # sessions written to Redis, buffers settled
        after, fds_after = ingest.rss_kib(), ingest.fds()
        connections = fds_after - fds_before
        run.wait()
    finally:
        ingest.stop()
    per = (after - before) * 1024 / max(1, connections)
    soft, hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)
    log(
        f"idle: {connections:,} connections held by one ingest process (each sent one upload:"
        f" a bound session), RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB ="
        f" {per:,.0f} bytes per connection; answered {run.total('acked'):,};"
        f" fd limit {soft}/{hard}; load average {load_average()}"
    )


async def outage(args: argparse.Namespace, env: dict[str, str], scratch: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "services" / "ingest_hj212"))
    from private_kafka import PrivateKafka  # the outage tests' private broker

    broker = PrivateKafka(scratch / "broker")
    log("outage: starting a private broker")
    broker.up()  # (tried twice: a JVM start sometimes fails on a loaded machine)
    try:
        names = Names()
        await prepare(broker.bootstrap, names, args.devices, args.city_seed)
        ingest = Ingest(broker.bootstrap, env["REDIS_URL"], names).start()
        speed = args.outage_rate / (args.devices * (1 / 60 + 1 / 600 + 1 / 3600))
        total_s = 20 + args.outage_s + 40
        options = ["--speed", f"{speed:.1f}", "--duration", f"{int(speed * total_s)}s"]
        options += ["--sample-s", "60", "--stats-every", "1", "--drain-timeout", "240"]
        run = SimRun(ingest.port, args.devices, args.shards, args.city_seed, options, scratch)
        began = time.monotonic()
        run.start()
        await asyncio.sleep(20)
        killed_at = time.monotonic() - began
        await asyncio.to_thread(broker.kill)
        await asyncio.sleep(args.outage_s)
        restart_at = time.monotonic() - began
        await asyncio.to_thread(broker.up)
        up_at = time.monotonic() - began
        run.wait(timeout_s=900)
        wall = time.monotonic() - began
        ingest.stop()
        during = sum(_at(s, restart_at) - _at(s, killed_at + 1.0) for s in run.stats)
        loss = await check_loss(
            broker.bootstrap, names.topic("frames"), run, readings_topic=names.topic("readings")
        )
        lat = run.latency()
        log(
            f"outage: {args.devices} devices paced at {args.outage_rate:,} frames/s; broker"
            f" stopped at {killed_at:.0f} s, started again at {restart_at:.0f} s, answering at"
            f" {up_at:.0f} s; answers while it was stopped: {during:.0f}; all answered after"
            f" {wall:.0f} s; re-sends {run.total('resends'):,}, reconnects"
            f" {run.total('connects') - args.devices:,}; p99 over the run"
            f" {(lat.quantile(0.99) or 0):.1f} s; load average {load_average()}"
        )
        log(f"  zero loss: {loss['zero_loss']} {json.dumps(loss)}")
    finally:
        with contextlib.suppress(Exception):
            broker.kill(signal.SIGKILL, wait_s=10)


async def standalone(args: argparse.Namespace, env: dict[str, str], scratch: Path) -> None:
    bootstrap, redis_url = env["KAFKA_BOOTSTRAP_SERVERS"], env["REDIS_URL"]
    figures: dict[str, tuple[float, float]] = {}
    for backend in ("memory", "disk"):
        names = Names()
        extra = {"ECOWATT_BUS_BACKEND": backend}
        folder = scratch / f"bus-{names.tag}"
        if backend == "disk":
            extra["ECOWATT_BUS_DISK_DIR"] = str(folder)
            # (no checkpoint during the run: the journal keeps every record for the check)
            extra["ECOWATT_BUS_DISK_CHECKPOINT_BYTES"] = str(2**40)
        ingest = Ingest(bootstrap, redis_url, names, **extra).start()
        options = ["--fast", "--duration", args.fast_duration, "--window", str(args.window)]
        options += ["--sample-s", "60", "--stats-every", "1", "--drain-timeout", "120"]
        cpu0, began = ingest.cpu_s(), time.monotonic()
        run = SimRun(ingest.port, args.devices, args.shards, args.city_seed, options, scratch)
        run.start().wait()
        wall = time.monotonic() - began
        cpu = ingest.cpu_s() - cpu0
        ingest.stop()
        rate, window = run.steady_rate()
        lat = run.latency()
        p99 = (lat.quantile(0.99) or math.nan) * 1e3
        figures[backend] = (rate, p99)
        check = ""
        if backend == "disk":
            uploads: set[tuple[str, str]] = set()
            for segment in sorted(folder.glob("segment-*.log")):
                for entry in read_segment(segment).entries:
                    if isinstance(entry, Record) and entry.topic == names.topic("frames"):
                        data = json.loads(entry.value)["data"]
                        if data["cn"] not in UPLOAD_ANSWERS and data["qn"]:
                            uploads.add((data["mn"], data["qn"]))
            shutil.rmtree(folder, ignore_errors=True)  # (hundreds of MiB: checked, not kept)
            ok = run.total("unacked") == 0 and len(uploads) >= run.total("acked")
            check = f"; journal holds {len(uploads):,} uploads for {run.total('acked'):,} answered"
            if not ok:
                raise SystemExit(f"LOSS CHECK FAILED (durable bus){check}")
        ms = [lat.quantile(q) or math.nan for q in (0.5, 0.9, 0.99)]
        log(
            f"standalone bus {backend}: {args.devices} devices, closed loop, window"
            f" {args.window}: acked {run.total('acked'):,} in {wall:.0f} s; steady {rate:,.0f}"
            f" acked frames/s over {window:.0f} s; ack p50 {ms[0] * 1e3:.1f} ms, p90"
            f" {ms[1] * 1e3:.1f} ms, p99 {ms[2] * 1e3:.1f} ms; ingest CPU {cpu / wall:.0%};"
            f" load average {load_average()}{check}"
        )
    (memory_rate, memory_p99), (disk_rate, disk_p99) = figures["memory"], figures["disk"]
    log(
        f"  durable / memory-only: {disk_rate / memory_rate:.0%} of the acked rate"
        f" (aim >= 50%), p99 {disk_p99:.1f} vs {memory_p99:.1f} ms"
    )


def archive_frames(mns: int, day: datetime) -> list[Record]:
    """A day of one 2011 a minute from `mns` meters (4 circuits, ≈ 0.7 KB), as
    `hj212.frames` records."""
    records = []
    codes = [(f"xe{c:02d}{code}", suffix) for c in range(1, 5) for code, suffix in _CODES]
    for minute in range(24 * 60):
        at = day + timedelta(minutes=minute)
        local = at.astimezone(ZoneInfo("Asia/Shanghai"))
        stamp = f"{local:%Y%m%d%H%M}00"
        for index in range(mns):
            mn = f"0100212E{index:016d}"
            qn = f"{stamp}{index % 1000:03d}"
            values = ";".join(
                f"{code}-{suffix}={'N' if suffix == 'Flag' else (index * 7 + minute) % 97 + 0.25}"
                for code, suffix in codes
            )
            segment = f"QN={qn};ST=31;CN=2011;PW={PW};MN={mn};Flag=5;CP=&&DataTime={stamp};"
            segment += values + "&&"
            data = segment.encode()
            raw = b"##%04d%s%04X\r\n" % (len(data), data, hj212.hj212_crc(data))
            message = frame_message(
                "hj212.frames",
                raw=raw,
                peer="10.0.0.1:5000",
                received_at=(at + timedelta(seconds=index % 50)).isoformat(),
                verdict="accepted",
                trace_id=new_trace_id(),
                produced_at=at.isoformat(),
                mn=mn,
                cn="2011",
                qn=qn,
            )
            records.append(Record("hj212.frames", 0, 0, message.key, message.value, (), 0))
    return records


_CODES = (
    ("01", "Rtd"),
    ("01", "Flag"),
    ("02", "Rtd"),
    ("02", "Flag"),
    ("03", "Rtd"),
    ("11", "Rtd"),
    ("12", "Rtd"),
    ("13", "Rtd"),
    ("21", "Rtd"),
    ("22", "Rtd"),
)


async def archive(args: argparse.Namespace, env: dict[str, str], scratch: Path) -> None:

    day = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).replace(
        hour=0, minute=0, second=0, microsecond=0
    ) - timedelta(days=1)
    started = time.perf_counter()
    records = archive_frames(args.archive_mns, day.astimezone(UTC))
    log(
        f"archive: {len(records):,} frames generated in {time.perf_counter() - started:.0f} s"
        f" (avg {sum(len(r.value) for r in records) / len(records):.0f} bytes as JSON records)"
    )
    async with scratch_database(infra("DATABASE_URL"), prefix="bench_archive") as url:
        db = Database(url, schema="ingest")
        try:
            await db.migrate(ROOT / "services/ingest-hj212/ecowatt_ingest/migrations")
            writer = ArchiveWriter(db=db, settings=IngestSettings(environment="test"))
            batch = 2000
            began = time.perf_counter()
            for start in range(0, len(records), batch):
                await writer.handle(records[start : start + batch])
            elapsed = time.perf_counter() - began
            async with db.session() as session:
                size = (
                    await session.execute(
                        text(
                            "SELECT sum(octet_length(raw)), sum(size),"
                            " pg_total_relation_size('ingest.' || (SELECT c.relname FROM"
                            " pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE"
                            " i.inhparent = 'ingest.frames'::regclass ORDER BY 1 LIMIT 1))"
                            " FROM ingest.frames"
                        )
                    )
                ).one()
            log(
                f"  write: {len(records):,} frames in {elapsed:.1f} s ="
                f" {len(records) / elapsed:,.0f} frames/s (batches of {batch});"
                f" raw {size[1] / 2**20:,.0f} MiB stored as {size[0] / 2**20:,.0f} MiB zlib"
                f" ({size[0] / size[1]:.0%}); the day's partition with its indexes"
                f" {size[2] / 2**20:,.0f} MiB"
            )
            mn = f"0100212E{args.archive_mns // 2:016d}"
            filters = FrameFilters(
                mns=frozenset({mn}),
                received_from=day.astimezone(UTC),
                received_to=(day + timedelta(days=1)).astimezone(UTC),
            )
            pages, whole = [], []
            for _ in range(args.archive_queries):
                t0 = time.perf_counter()
                async with db.session() as session:
                    rows, total = await list_frames(
                        session=session, filters=filters, visible=None, page=PageRequest(1, 500)
                    )
                    items = [frame_view(r) for r in rows]  # (as the API answers: decompressed)
                pages.append(time.perf_counter() - t0)
                assert len(items) == min(500, total)
                t0 = time.perf_counter()
                count = 0
                async for _row in iter_frames(db=db, filters=filters, visible=None):
                    count += 1
                whole.append(time.perf_counter() - t0)
            pages.sort()
            whole.sort()
            log(
                f"  one MN, one day ({total:,} frames): first page of 500 with its total"
                f" p50 {pages[len(pages) // 2] * 1e3:.0f} ms, max {pages[-1] * 1e3:.0f} ms"
                f" (aim < 200 ms); the whole day in arrival order ({count:,} rows) p50"
                f" {whole[len(whole) // 2] * 1e3:.0f} ms, max {whole[-1] * 1e3:.0f} ms;"
                f" {args.archive_queries} runs; load average {load_average()}"
            )
        finally:
            await db.dispose()


async def main_async(args: argparse.Namespace) -> None:
    env = {name: infra(name) for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    scratch = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    log(
        f"bench-ingest {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores,"
        f" {platform.python_implementation()} {platform.python_version()};"
        f" load average {load_average()}; scratch {scratch}"
    )
    if "throughput" in args.only or "paced" in args.only:
        await throughput(args, env, scratch)
    if "outage" in args.only:
        await outage(args, env, scratch)
    if "standalone" in args.only:
        await standalone(args, env, scratch)
    if "archive" in args.only:
        await archive(args, env, scratch)
    if "idle" in args.only:  # last: its 20,000 closed connections leave ports in TIME_WAIT
        await idle_memory(args, env, scratch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="throughput,paced,idle,outage,standalone,archive")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--shards", type=int, default=2, help="simulator processes")
    parser.add_argument("--window", type=int, default=1, help="unanswered uploads per device")
    parser.add_argument("--fast-duration", default="12h", help="simulated time, closed loop")
    parser.add_argument("--paced-rate", type=int, default=3000, help="offered frames/s")
    parser.add_argument("--paced-s", type=float, default=30.0, help="wall seconds")
    parser.add_argument("--idle-connections", type=int, default=19_900)
    parser.add_argument("--outage-s", type=float, default=30.0)
    parser.add_argument("--outage-rate", type=int, default=2000, help="offered frames/s")
    parser.add_argument("--city-seed", type=int, default=212)
    parser.add_argument("--profile", action="store_true", help="py-spy the ingest process")
    parser.add_argument("--workers", type=int, default=1, help="ingest worker processes")
    parser.add_argument("--archive-mns", type=int, default=200, help="devices in the archive day")
    parser.add_argument("--archive-queries", type=int, default=20)
    args = parser.parse_args()
    args.only = set(args.only.split(","))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
