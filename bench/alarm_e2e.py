"""Stage (c) of `make bench-alarm`: frame → `alarms`, end to end, under background load.

Every piece runs as in a distributed deployment, each in a process of its own, on the real
broker, PostgreSQL and Redis (private topics, a fresh database, a private Redis prefix):

* ingest — `python -m ecowatt_ingest.tcp` (uvloop, default protection settings);
* validation — `python -m ecowatt_validation` (binder, checks, its jobs);
* alarm — `python -m ecowatt_alarm` (engine, outbox relay, timers);
* background load — `ecowatt-simulator` (`python -m ecowatt_simulator`): `--devices` synthetic
  loggers of 3 circuits (total line, production, control) reporting 2011 every simulated
  minute (plus 2051/2061), paced (`--speed`) so that they send `--rate` frames/s together; the
  simulated period starts hours in the past, so the alarm service treats it as a replay (its
  per-reading work is the same);
* probes — this process plays `--probes` more loggers (one enterprise each: total line,
  production, control facility in an ALL control group), speaking HJ 212 with the codec. Each
  is primed with 40 minutes of history: production running, the control facility stopped for
  the last 29 of them; then, one probe at a time, the frame that completes R1's 30-minute
  confirmation is written to the socket, data time ≈ now (live data). The figure is the time
  from writing that frame to receiving its `alarms` event (`opened`, R1) on a consumer here;
  the time to its 9014 (ingest's answer, after Kafka's ack) is reported beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import ecowatt_hj212 as hj212
import httpx
from aiokafka.admin import AIOKafkaAdminClient
from ecowatt_kernel.bus import KafkaBus, KafkaConnection, Record
from ecowatt_kernel.contracts import (
    TOPICS,
    AlarmChanged,
    FacilityStateChanged,
    decode,
    encode,
)
from ecowatt_simulator import Fleet

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Asia/Shanghai")
PASSWORD = "246810"  # noqa: S105 - the simulated loggers' PW
FRAMES_PER_DEVICE_MINUTE = 1 + 1 / 10 + 1 / 60  # 2011 each minute, 2051 / 10 min, 2061 / h


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Probe:
    """One probe logger: an enterprise with a total line (1), production (2), control (3)."""

    def __init__(self, fleet: Fleet, mn: str) -> None:
        self.device = fleet.devices[mn]
        self.mn = mn
        self.enterprise_id = self.device.enterprise_id or ""
        by_circuit = {p.circuit: p for p in self.device.points}
        self.production_kw = 0.7 * (by_circuit[2].rated_kw or 100.0)
        self.control_kw = 0.8 * (by_circuit[3].rated_kw or 30.0)
        self.control_facility = by_circuit[3].facility_id or ""
        self.counters = [1000.0, 500.0, 200.0]
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.framer = hj212.StreamFramer()
        self.acks: dict[str, asyncio.Future[float]] = {}
        self.task: asyncio.Task[None] | None = None
        self.qn_at = datetime(2000, 1, 1)

    async def connect(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.reader is not None
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                return
            now = time.perf_counter()
            for event in self.framer.feed(chunk):
                if isinstance(event, hj212.RawFrame):
                    with contextlib.suppress(hj212.DecodeError):
                        frame = hj212.decode(event.data)
                        waiter = self.acks.pop(frame.qn or "", None)
                        if frame.cn == "9014" and waiter is not None and not waiter.done():
                            waiter.set_result(now)

    def frame(self, data_time: datetime, control_on: bool) -> tuple[bytes, str]:
        """A 2011 upload for `data_time` (local), and its QN (device clock = wall clock)."""
        power = [0.0, self.production_kw, self.control_kw if control_on else 0.0]
        power[0] = (power[1] + power[2]) * 1.06 + 2.0
        values: list[tuple[str, str]] = []
        for i, kw in enumerate(power):
            c = i + 1
            self.counters[i] += kw / 60
            values += [
                (f"xe01{c:02d}-Rtd", f"{kw * random.uniform(0.98, 1.02):.2f}"),
                (f"xe01{c:02d}-Flag", "N"),
                (f"xe02{c:02d}-Rtd", f"{self.counters[i]:.2f}"),
                (f"xe02{c:02d}-Flag", "N"),
                (f"xe21{c:02d}-Rtd", f"{random.uniform(226, 230):.1f}"),
            ]
        # QNs are device-clock milliseconds, unique per device (40 frames may share one ms)
        now = datetime.now(TZ).replace(tzinfo=None)
        self.qn_at = max(now, self.qn_at + timedelta(milliseconds=1))
        qn = hj212.format_hj212_time(self.qn_at, milliseconds=True)
        message = hj212.Message(
            cn="2011",
            qn=qn,
            st="31",
            pw=self.device.password,
            mn=self.mn,
            flag=5,
            cp=(("DataTime", hj212.format_hj212_time(data_time)), *values),
        )
        return hj212.encode(message), qn

    async def send(self, data: bytes, qn: str) -> asyncio.Future[float]:
        assert self.writer is not None
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.acks[qn] = waiter
        self.writer.write(data)
        await self.writer.drain()
        return waiter

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        if self.task is not None:
            self.task.cancel()


class Processes:
    """Subprocesses started here; stopped by their own PIDs (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, args: Sequence[str], env: dict[str, str], **kw: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(  # noqa: S603 - our own modules
            [sys.executable, *args], env={**os.environ, **env}, text=True, **kw
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _ready(url: str, proc: subprocess.Popen[str], limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{url}: process exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url, timeout=2)).status_code == 200:
                    return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"{url} not ready")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its living children (a service's workers
    1…N−1 are children of worker 0), from Linux /proc."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name = stat.parent.name
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


TOPIC_SHORT = {
    "hj212.frames": "frames",
    "telemetry.readings": "readings",
    "registry.changes": "registry",
    "telemetry.points": "points",
    "quality.findings": "findings",
    "facility.states": "states",
    "alarms": "alarms",
    "control.tasks": "tasks",
    "device.commands": "commands",
    "device.command-results": "results",
    "audit.events": "audit",
}
"""Every topic of the pipeline, by the short name of its private copy."""


async def private_topics(bus: KafkaBus, prefix: str, retention_ms: int) -> dict[str, str]:
    """Private copies of every topic (production partitions, shorter retention)."""
    topic = {short: f"{prefix}.{short}" for short in TOPIC_SHORT.values()}
    await bus.ensure_topics(
        [
            dataclasses.replace(
                TOPICS[name],
                name=topic[short],
                retention_ms=None if TOPICS[name].compacted else retention_ms,
            )
            for name, short in TOPIC_SHORT.items()
        ]
    )
    return topic


@dataclasses.dataclass
class Services:
    validation: subprocess.Popen[str]
    validation_port: int
    alarm: subprocess.Popen[str]
    alarm_port: int
    ingest: subprocess.Popen[str]
    port: int
    """Ingest's HJ 212 port."""


def service_env(bootstrap: str, db_url: str, redis_url: str) -> dict[str, str]:
    """What every service process of a stage shares."""
    return {
        "ECOWATT_ENVIRONMENT": "test",
        "ECOWATT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ECOWATT_DATABASE_URL": db_url,
        "ECOWATT_REDIS_URL": redis_url,
        "ECOWATT_LOG_LEVEL": "WARNING",
    }


async def start_services(
    procs: Processes,
    *,
    prefix: str,
    topic: dict[str, str],
    common: dict[str, str],
    tag: str,
    ingest_env: dict[str, str],
    workers: int = 1,
) -> Services:
    """Validation, alarm and ingest, each a process of its own on the private topics;
    validation and alarm with `workers` worker processes each (`ECOWATT_*_WORKERS`)."""
    validation_port, alarm_port = free_port(), free_port()
    validation = procs.start(
        ["-m", "ecowatt_validation"],
        {
            **common,
            "ECOWATT_HTTP_PORT": str(validation_port),
            "ECOWATT_READINGS_TOPIC": topic["readings"],
            "ECOWATT_POINTS_TOPIC": topic["points"],
            "ECOWATT_REGISTRY_TOPIC": topic["registry"],
            "ECOWATT_FINDINGS_TOPIC": topic["findings"],
            "ECOWATT_VALIDATION_CONSUMER_PREFIX": f"{prefix}.validation",
            "ECOWATT_VALIDATION_WORKERS": str(workers),
        },
    )
    alarm = procs.start(
        ["-m", "ecowatt_alarm"],
        {
            **common,
            "ECOWATT_HTTP_PORT": str(alarm_port),
            "ECOWATT_ALARM_POINTS_TOPIC": topic["points"],
            "ECOWATT_ALARM_REGISTRY_TOPIC": topic["registry"],
            "ECOWATT_ALARM_TASKS_TOPIC": topic["tasks"],
            "ECOWATT_ALARM_FINDINGS_TOPIC": topic["findings"],
            "ECOWATT_ALARM_STATES_TOPIC": topic["states"],
            "ECOWATT_ALARM_ALARMS_TOPIC": topic["alarms"],
            "ECOWATT_ALARM_CONSUMER_PREFIX": f"{prefix}.alarm",
            "ECOWATT_ALARM_NOTIFY_ENABLED": "false",
            "ECOWATT_ALARM_WORKERS": str(workers),
        },
    )
    ingest = procs.start(
        ["-m", "ecowatt_ingest.tcp"],
        {
            **common,
            "ECOWATT_HJ212_HOST": "127.0.0.1",
            "ECOWATT_HJ212_PORT": "0",
            "ECOWATT_REDIS_PREFIX": f"{prefix}.ingest",
            "ECOWATT_INSTANCE_ID": f"bench-{tag}",
            "ECOWATT_TOPIC_FRAMES": topic["frames"],
            "ECOWATT_TOPIC_READINGS": topic["readings"],
            "ECOWATT_TOPIC_COMMANDS": topic["commands"],
            "ECOWATT_TOPIC_COMMAND_RESULTS": topic["results"],
            "ECOWATT_TOPIC_AUDIT": topic["audit"],
            "ECOWATT_TOPIC_REGISTRY": topic["registry"],
            **ingest_env,
        },
        stdout=subprocess.PIPE,
    )
    assert ingest.stdout is not None
    line = await asyncio.to_thread(ingest.stdout.readline)
    if not line.startswith("ready"):
        raise RuntimeError(f"ingest did not start: {line!r}")
    port = int(line.split()[1])
    await _ready(f"http://127.0.0.1:{validation_port}/readyz", validation)
    await _ready(f"http://127.0.0.1:{alarm_port}/readyz", alarm)
    return Services(validation, validation_port, alarm, alarm_port, ingest, port)


async def _offsets(bootstrap: str, group: str, topic: str, bus: KafkaBus) -> tuple[int, int]:
    """(records on `topic`, records `group` has committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ends = await bus.end_offsets(topic)
        offsets = await admin.list_consumer_group_offsets(group)
        done = {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == topic}
        return sum(ends.values()), sum(min(done.get(p, 0), end) for p, end in ends.items())
    finally:
        await admin.close()


async def _lag(bootstrap: str, group: str, topic: str, bus: KafkaBus) -> int:
    produced, consumed = await _offsets(bootstrap, group, topic, bus)
    return produced - consumed


async def run(args: Any, *, bootstrap: str, db_url: str, redis_url: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    prefix = f"bench.e2e.{tag}"
    bus = KafkaBus(KafkaConnection(bootstrap_servers=bootstrap))
    await bus.start()
    topic = await private_topics(bus, prefix, 3_600_000)
    background = Fleet.synthetic(args.e2e_devices, circuits=3, seed=71, password=PASSWORD)
    probes_fleet = Fleet.synthetic(args.e2e_probes, circuits=3, seed=72, password=PASSWORD)
    changes = background.registry_changes() + probes_fleet.registry_changes()
    for i in range(0, len(changes), 2000):
        await bus.publish([encode(c, topic=topic["registry"]) for c in changes[i : i + 2000]])

    common = service_env(bootstrap, db_url, redis_url)
    procs = Processes()
    result: dict[str, Any] = {}
    try:
        services = await start_services(
            procs,
            prefix=prefix,
            topic=topic,
            common=common,
            tag=tag,
            # the background runs hours behind the wall clock: no 1012, no backfill
            ingest_env={
                "ECOWATT_MAX_CLOCK_DRIFT_S": str(30 * 86400),
                "ECOWATT_BACKFILL_ENABLED": "false",
                "ECOWATT_INGEST_WORKERS": str(args.e2e_ingest_workers),
            },
            workers=args.e2e_workers,
        )
        validation, alarm, ingest, port = (
            services.validation,
            services.alarm,
            services.ingest,
            services.port,
        )

        states: dict[str, str] = {}
        opened: dict[str, float] = {}

        async def on_event(records: Sequence[Record]) -> None:
            now = time.perf_counter()
            for record in records:
                event = decode(record).data
                if isinstance(event, AlarmChanged):
                    if event.change == "opened" and event.rule_code == "R1":
                        opened.setdefault(event.enterprise_id, now)
                elif isinstance(event, FacilityStateChanged):
                    states[event.subject_id] = event.state

        await bus.subscribe(
            group=f"{prefix}.bench", topics=[topic["alarms"], topic["states"]], handler=on_event
        )

        # Background load: paced so that the fleet sends `rate` frames/s.
        speed = args.e2e_rate * 60 / (FRAMES_PER_DEVICE_MINUTE * args.e2e_devices)
        # Data hours in the past (a replay to the alarm service) that never reach the present:
        # the simulator runs until it is stopped, at most ~20 minutes of wall time.
        start = datetime.now(UTC) - timedelta(seconds=1200 * speed + 3600)
        simulator = procs.start(
            [
                "-m",
                "ecowatt_simulator",
                "--target",
                f"127.0.0.1:{port}",
                "--synthetic-devices",
                str(args.e2e_devices),
                "--circuits",
                "3",
                "--password",
                PASSWORD,
                "--city-seed",
                "71",
                "--speed",
                f"{speed:.3f}",
                "--start",
                start.isoformat(),
                "--sample-s",
                "60",
                "--counts-only",
                "--drain-timeout",
                "10",
            ],
            {},
            stdout=subprocess.PIPE,
        )
        probes = [Probe(probes_fleet, mn) for mn in sorted(probes_fleet.devices)]
        for probe in probes:
            await probe.connect(port)
        # Prime: 40 minutes of history, the control facility stopped for the last 29.
        t0 = datetime.now(TZ).replace(second=0, microsecond=0, tzinfo=None) + timedelta(minutes=2)
        acks = []
        for probe in probes:
            for m in range(40, 0, -1):
                data, qn = probe.frame(t0 - timedelta(minutes=m), control_on=m > 30)
                acks.append(await probe.send(data, qn))
        await asyncio.wait_for(asyncio.gather(*acks), 120)
        await asyncio.sleep(args.e2e_warmup)
        primed = time.monotonic()
        controls = {p.control_facility for p in probes}
        while not all(states.get(c) == "stopped" for c in controls):
            if time.monotonic() - primed > 120:
                raise TimeoutError("the probes' control facilities never read stopped")
            await asyncio.sleep(0.05)
        assert not opened, f"R1 opened while priming: {sorted(opened)[:3]}"
        # ... and until the pipeline has worked off the priming burst (under a second of lag).
        while True:
            lag = await _lag(bootstrap, f"{prefix}.validation.bind", topic["readings"], bus)
            lag += await _lag(bootstrap, f"{prefix}.alarm.points", topic["points"], bus) // 3
            if lag < args.e2e_rate or time.monotonic() - primed > 90:
                break  # (behind after 90 s: it does not keep up; measured as it is)
            await asyncio.sleep(1)
        uptime_before = os.getloadavg()
        roles = {
            "ingest": ingest.pid,
            "validation": validation.pid,
            "alarm": alarm.pid,
            "simulator": simulator.pid,
            "bench (probes)": os.getpid(),
        }
        cpu_before = {role: cpu_seconds(pid) for role, pid in roles.items()}
        stages = {
            "readings": (f"{prefix}.validation.bind", topic["readings"]),
            "points": (f"{prefix}.alarm.points", topic["points"]),
        }
        before = {k: await _offsets(bootstrap, g, t, bus) for k, (g, t) in stages.items()}
        measured_from = time.perf_counter()

        # One probe every `spacing` seconds (jittered), without waiting for the previous one:
        # the probes are independent enterprises, and a pipeline that falls behind must not
        # stretch the phase. Results are collected once the last probe had `wait_s` seconds.
        phase = time.perf_counter()
        spacing = args.e2e_probe_s / max(1, len(probes))
        sent_at: dict[str, float] = {}
        acks: list[asyncio.Future[float]] = []
        for probe in probes:
            data, qn = probe.frame(t0, control_on=False)
            sent_at[probe.enterprise_id] = time.perf_counter()
            acks.append(await probe.send(data, qn))
            await asyncio.sleep(spacing * random.uniform(0.5, 1.5))
        phase = time.perf_counter() - phase
        last = time.perf_counter()
        while len(opened) < len(probes) and time.perf_counter() - last < args.e2e_wait_s:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.wait(acks, timeout=1)
        to_ack = sorted(
            a.result() - sent_at[p.enterprise_id]
            for p, a in zip(probes, acks, strict=True)
            if a.done() and not a.cancelled()
        )
        latencies = sorted(opened[e] - sent for e, sent in sent_at.items() if e in opened)
        lost = len(probes) - len(latencies)
        slow = sorted(
            (
                (sent - sent_at[probes[0].enterprise_id], opened[e] - sent if e in opened else -1.0)
                for e, sent in sent_at.items()
            ),
            key=lambda row: -row[1] if row[1] >= 0 else -1e9,
        )
        load = os.getloadavg()
        cpu = {
            role: round(
                (cpu_seconds(pid) - cpu_before[role]) / (time.perf_counter() - measured_from), 2
            )
            for role, pid in roles.items()
        }
        after = {k: await _offsets(bootstrap, g, t, bus) for k, (g, t) in stages.items()}
        measured = time.perf_counter() - measured_from
        flow = {
            k: {
                "produced_per_s": round((after[k][0] - before[k][0]) / measured),
                "consumed_per_s": round((after[k][1] - before[k][1]) / measured),
                "behind_at_start": before[k][0] - before[k][1],
                "behind_at_end": after[k][0] - after[k][1],
            }
            for k in stages
        }
        simulator.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(simulator.communicate)
        summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        for probe in probes:
            await probe.close()
        q = (
            statistics.quantiles(latencies, n=100, method="inclusive")
            if len(latencies) > 1
            else latencies * 99
        )
        result = {
            "workers": {
                "ingest": args.e2e_ingest_workers,
                "validation": args.e2e_workers,
                "alarm": args.e2e_workers,
            },
            "probes": len(latencies),
            "lost": lost,
            "background_devices": args.e2e_devices,
            "background_rate_target": args.e2e_rate,
            "background_frames": summary.get("frames"),
            "background_frames_per_s": summary.get("frames_per_s"),
            "background_speed": round(speed, 1),
            "during_probes": flow,
            "cpu_cores_during_probes": cpu,
            "probe_phase_s": round(phase, 1),
            "p50_ms": round(1000 * q[49], 1) if latencies else None,
            "p99_ms": round(1000 * q[98], 1) if latencies else None,
            "max_ms": round(1000 * latencies[-1], 1) if latencies else None,
            "to_9014_p50_ms": round(1000 * statistics.median(to_ack), 1) if to_ack else None,
            "to_9014_max_ms": round(1000 * max(to_ack), 1) if to_ack else None,
            "slowest_probes_sent_at_s_to_alarm_s": [[round(x, 2) for x in r] for r in slow[:5]],
            "load_average_before": [round(x, 2) for x in uptime_before],
            "load_average_after": [round(x, 2) for x in load],
        }
    finally:
        procs.stop()
        await bus.stop()
    return result
