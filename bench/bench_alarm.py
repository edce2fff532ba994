"""`make bench-alarm`: what the alarm service costs and how fast it answers, on this branch.

The issue's figure is end-to-end: a frame arriving at ingest → `alarms`, under 2,000
frames/s. Ingest and validation are not on this branch, so this measures the part that is:
`PointReading` on `telemetry.points` → alarm service → `alarms`, through the real broker and
PostgreSQL (Kafka bus, outbox, one alarm process).

(a) throughput: a backlog of readings for N enterprises (3 points each: total line,
    production, control) is published first; one alarm process then consumes it; the figure
    is readings applied per second (each is one point-state evaluation, the facility and
    control-group rules, and the persisted runtime/state/alarm rows of its batch).
(b) latency: P probe enterprises are primed so that production has run with its control
    facility stopped for 29 minutes; under background load (a subprocess publishing
    readings at `--rate` per second for N other enterprises, data time = now), one probe
    moment per enterprise (a reading of each of its points) completes R1's 30-minute
    confirmation; the figure is the time from publishing it to receiving its `alarms` event
    (p50/p99 over P probes).
(c) end to end (`alarm_e2e.py`): HJ 212 frame written to ingest's socket → `alarms` event,
    with ingest, validation and alarm each in its own process and the simulator sending
    `--e2e-rate` frames/s of background load from another; the probes are loggers played here.
    `--e2e-workers N` runs validation and alarm with N worker processes each
    (`ECOWATT_VALIDATION_WORKERS`, `ECOWATT_ALARM_WORKERS`), `--e2e-ingest-workers N` ingest.

(d) catch-up (`alarm_catchup.py`): yesterday's day of a 200-enterprise city replayed end to
    end as fast as ingest answers, ingest, validation and alarm each in its own process; the
    figure is how long until all of it is judged, and its alarms must be those of the same
    data played in order.

`--stages abcd` (default) picks the stages; `--stages d` runs the catch-up one alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from asgi_lifespan import LifespanManager
from ecowatt_alarm.service import build_service
from ecowatt_alarm.settings import AlarmSettings
from ecowatt_kernel.app import create_app
from ecowatt_kernel.bus import KafkaBus, KafkaConnection, Record
from ecowatt_kernel.contracts import AlarmChanged, PointReading, TopicSpec, decode, encode
from ecowatt_kernel.db import async_url, scratch_database
from infra_env import infra

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from alarm_city import SyntheticCity
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


def reading(enterprise: str, suffix: str, mn: str, t: datetime, kw: float) -> PointReading:
    return PointReading(
        enterprise_id=enterprise,
        point_id=f"{enterprise}-{suffix}",
        mn=mn,
        cn="2011",
        data_time=t,
        values={
            "active_power_kw": round(kw * random.uniform(0.97, 1.03), 3),
            "voltage_v:A": 228.0,
            "energy_delta_kwh": round(kw / 3600, 5),
        },
    )


def healthy(enterprise: str, t: datetime) -> list[PointReading]:
    return [
        reading(enterprise, "P", f"{enterprise}-A", t, 80.0),
        reading(enterprise, "C", f"{enterprise}-B", t, 24.0),
        reading(enterprise, "T", f"{enterprise}-A", t, 109.0),
    ]


async def publish(bus: KafkaBus, topic: str, events: Sequence[PointReading]) -> None:
    # In order: concurrent calls could reorder one enterprise's readings across batches.
    batch = 2000
    for i in range(0, len(events), batch):
        await bus.publish([encode(e, topic=topic) for e in events[i : i + batch]])


# ------------------------------------------------------------------- background producer


async def produce(args: argparse.Namespace) -> None:
    """Subprocess: `rate` readings/s for `enterprises` healthy enterprises, data time = now."""
    bus = KafkaBus(KafkaConnection(bootstrap_servers=infra("KAFKA_BOOTSTRAP_SERVERS")))
    await bus.start()
    names = [f"{args.prefix}-healthy-{i}" for i in range(args.enterprises)]
    sent, started, cursor = 0, time.perf_counter(), 0
    try:
        while time.perf_counter() - started < args.duration:
            tick = time.perf_counter()
            due = int((tick - started) * args.rate) - sent
            events: list[PointReading] = []
            now = datetime.now(UTC)
            while len(events) < due:
                events.extend(healthy(names[cursor % len(names)], now))
                cursor += 1
            if events:
                await bus.publish([encode(e, topic=args.topic) for e in events])
                sent += len(events)
            await asyncio.sleep(max(0.0, 0.05 - (time.perf_counter() - tick)))
    finally:
        await bus.stop()
    print(json.dumps({"sent": sent, "seconds": time.perf_counter() - started}))


# ------------------------------------------------------------------------------- main


GC_PAUSES: list[tuple[int, float]] = []
_gc_started = [0.0]


def _gc_probe(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        GC_PAUSES.append((info["generation"], time.perf_counter() - _gc_started[0]))


async def main_ab(args: argparse.Namespace) -> dict[str, object]:
    """Stages (a) and (b): one alarm process in this one, PointReadings published here."""
    import gc

    gc.callbacks.append(_gc_probe)
    bootstrap = infra("KAFKA_BOOTSTRAP_SERVERS")
    database_url = infra("DATABASE_URL")
    name = f"ecowatt_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(async_url(database_url), isolation_level="AUTOCOMMIT")
    async with admin.connect() as c:
        await c.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = database_url.rpartition("/")[0] + "/" + name
    prefix = f"bench.alarm.{uuid.uuid4().hex[:6]}"
    settings = AlarmSettings(
        environment="test",
        bus_backend="kafka",
        kafka_bootstrap_servers=bootstrap,
        database_url=SecretStr(db_url),
        redis_url=SecretStr(infra("REDIS_URL")),
        alarm_points_topic=f"{prefix}.points",
        alarm_registry_topic=f"{prefix}.registry",
        alarm_tasks_topic=f"{prefix}.tasks",
        alarm_findings_topic=f"{prefix}.findings",
        alarm_states_topic=f"{prefix}.states",
        alarm_alarms_topic=f"{prefix}.alarms",
        alarm_consumer_prefix=prefix,
        alarm_notify_enabled=False,
        log_level="WARNING",
    )
    bus = KafkaBus(KafkaConnection(bootstrap_servers=bootstrap))
    await bus.start()
    topics = ("points", "registry", "tasks", "findings", "states", "alarms")
    await bus.ensure_topics(
        [
            TopicSpec(
                f"{prefix}.{t}",
                "k",
                "",
                partitions=3 if t in ("registry", "tasks") else 12,
                compacted=t == "registry",
                retention_ms=None if t == "registry" else 3_600_000,
            )
            for t in topics
        ]
    )
    background = SyntheticCity(f"{prefix}-bg", date.today(), scenarios=[], healthy=args.enterprises)
    probes = SyntheticCity(f"{prefix}-probe", date.today(), scenarios=[], healthy=args.probes)
    changes = background.registry_changes() + probes.registry_changes()
    await bus.publish([encode(c, topic=f"{prefix}.registry") for c in changes])

    # (a) a backlog, published before the service starts.
    steps = max(1, args.backlog // (3 * args.enterprises))
    base = datetime.now(UTC) - timedelta(hours=3)
    names = [e.id for e in background.enterprises]
    backlog: list[PointReading] = []
    for s in range(steps):
        t = base + timedelta(seconds=5 * s)
        for n in names:
            backlog.extend(healthy(n, t))
    await publish(bus, f"{prefix}.points", backlog)

    app = create_app(build_service(), settings=settings)
    result: dict[str, object] = {}
    async with LifespanManager(app, startup_timeout=300, shutdown_timeout=120):
        processor = app.state.context.state["processor"]
        started = time.perf_counter()
        first = None
        while processor.readings_applied < len(backlog):
            if first is None and processor.readings_applied:
                first = time.perf_counter()
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - (first or started)
        result["throughput"] = {
            "readings": len(backlog),
            "enterprises": args.enterprises,
            "seconds": round(elapsed, 2),
            "readings_per_s": round(len(backlog) / elapsed),
        }
        print(json.dumps(result["throughput"]), flush=True)

        # (b) latency: prime the probes (control stopped for 29 of 60 minutes).
        received: dict[str, float] = {}

        async def on_alarm(records: Sequence[Record]) -> None:
            for record in records:
                event = decode(record).data
                if isinstance(event, AlarmChanged) and event.change == "opened":
                    received.setdefault(event.enterprise_id, time.perf_counter())

        await bus.subscribe(
            group=f"{prefix}.bench-latency",
            topics=[f"{prefix}.alarms"],
            handler=on_alarm,
            max_batch=500,
        )
        t0 = datetime.now(UTC).replace(microsecond=0)
        prime: list[PointReading] = []
        for e in probes.enterprises:
            for m in range(60, 0, -1):
                t = t0 - timedelta(minutes=m)
                ctrl = 24.0 if m > 29 else 0.0
                prime += [
                    reading(e.id, "P", f"{e.id}-A", t, 80.0),
                    reading(e.id, "C", f"{e.id}-B", t, ctrl),
                    reading(e.id, "T", f"{e.id}-A", t, 85.0 + ctrl),
                ]
        target = processor.readings_applied + len(prime)
        await publish(bus, f"{prefix}.points", prime)
        while processor.readings_applied < target:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await asyncio.sleep(2)
        assert not received, f"probes fired while priming: {sorted(received)[:3]}"

        producer = subprocess.Popen(  # noqa: ASYNC220, S603 - our own script, for the whole phase
            [
                sys.executable,
                __file__,
                "--produce",
                "--topic",
                f"{prefix}.points",
                "--prefix",
                f"{prefix}-bg",
                "--enterprises",
                str(args.enterprises),
                "--rate",
                str(args.rate),
                "--duration",
                str(args.duration),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        applied_before = processor.readings_applied
        await asyncio.sleep(args.warmup)
        latencies: list[float] = []
        split: list[tuple[float, float]] = []
        lost = 0
        phase_started = time.perf_counter()
        for e in probes.enterprises:
            t = t0 + timedelta(minutes=1)
            # One moment of every device of the enterprise: it is judged at t once each of
            # its devices has reported past t (event time).
            probe = [
                reading(e.id, "P", f"{e.id}-A", t, 80.0),
                reading(e.id, "C", f"{e.id}-B", t, 0.0),
                reading(e.id, "T", f"{e.id}-A", t, 85.0),
            ]
            sent_at = time.perf_counter()
            await bus.publish([encode(r, topic=f"{prefix}.points") for r in probe])
            engine_at = None
            while e.id not in received and time.perf_counter() - sent_at < 10:
                if engine_at is None:
                    rt = processor.runtimes.get(e.id)
                    if rt is not None and any(k.startswith("R1|") for k in rt.alarms):
                        engine_at = time.perf_counter()
                await asyncio.sleep(0.002)
            if engine_at is not None:
                split.append((engine_at - sent_at, time.perf_counter() - engine_at))
            if e.id in received:
                latencies.append(received[e.id] - sent_at)
            else:
                lost += 1
                rt = processor.runtimes.get(e.id)
                print(
                    "LOST",
                    e.id,
                    rt
                    and {
                        k: (v.get("state"), v.get("since"), v.get("last_t"))
                        for k, v in rt.points.items()
                    },
                    rt and rt.alarms,
                    rt and rt.conditions,
                    file=sys.stderr,
                )
            await asyncio.sleep(random.uniform(0.05, 0.25))
        phase = time.perf_counter() - phase_started
        background_applied = processor.readings_applied - applied_before
        out, _ = await asyncio.to_thread(producer.communicate)
        produced = json.loads(out.strip().splitlines()[-1])
        # Did the one process keep up? Time to apply what was still queued when the load ended.
        drain_started = time.perf_counter()
        while processor.readings_applied < applied_before + produced["sent"] + 3 * len(latencies):
            if time.perf_counter() - drain_started > 300:
                break
            await asyncio.sleep(0.01)
        drain = time.perf_counter() - drain_started
        latencies.sort()
        q = (
            statistics.quantiles(latencies, n=100, method="inclusive")
            if len(latencies) > 1
            else latencies * 99
        )
        result["latency"] = {
            "probes": len(latencies),
            "lost": lost,
            "background_rate_target": args.rate,
            "background_published_per_s": round(produced["sent"] / produced["seconds"]),
            "background_applied_during_probes": background_applied,
            "probe_phase_s": round(phase + args.warmup, 1),
            "backlog_drain_after_load_s": round(drain, 2),
            "p50_ms": round(1000 * q[49], 1),
            "p99_ms": round(1000 * q[98], 1),
            "max_ms": round(1000 * latencies[-1], 1) if latencies else None,
            "gc_max_ms": round(1000 * max((p for _, p in GC_PAUSES), default=0), 1),
            "gc_gen2": sum(1 for g, _ in GC_PAUSES if g == 2),
            "to_engine_p50_ms": round(1000 * statistics.median(a for a, _ in split), 1),
            "to_engine_max_ms": round(1000 * max(a for a, _ in split), 1),
            "engine_to_event_p50_ms": round(1000 * statistics.median(b for _, b in split), 1),
            "engine_to_event_max_ms": round(1000 * max(b for _, b in split), 1),
        }
        print(json.dumps(result["latency"]), flush=True)
    await bus.stop()
    async with admin.connect() as c:
        await c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    await admin.dispose()
    return result


async def main_c(args: argparse.Namespace) -> dict[str, object]:
    """Stage (c): frame → alarm through ingest, validation and alarm, in a fresh database."""
    sys.path.insert(0, str(Path(__file__).parent))
    import alarm_e2e

    async with scratch_database(infra("DATABASE_URL"), prefix="ecowatt_bench") as db_url:
        result = await alarm_e2e.run(
            args,
            bootstrap=infra("KAFKA_BOOTSTRAP_SERVERS"),
            db_url=db_url,
            redis_url=infra("REDIS_URL"),
        )
    print(json.dumps(result), flush=True)
    return result


async def main_d(args: argparse.Namespace) -> dict[str, object]:
    """Stage (d): a day of the city caught up end to end, unpaced (`alarm_catchup.py`)."""
    import alarm_catchup

    async with scratch_database(infra("DATABASE_URL"), prefix="ecowatt_bench") as db_url:
        result = await alarm_catchup.run(
            args,
            bootstrap=infra("KAFKA_BOOTSTRAP_SERVERS"),
            db_url=db_url,
            redis_url=infra("REDIS_URL"),
        )
    print(json.dumps(result), flush=True)
    return result


async def main(args: argparse.Namespace) -> dict[str, object]:
    result: dict[str, object] = {}
    if "a" in args.stages or "b" in args.stages:
        result.update(await main_ab(args))
    if "c" in args.stages:
        result["end_to_end"] = await main_c(args)
    if "d" in args.stages:
        result["catch_up"] = await main_d(args)
    result["machine"] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enterprises", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=150_000)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=90.0)
    parser.add_argument(
        "--stages", default="abcd", help="a: throughput, b: latency, c: e2e, d: catch-up"
    )
    parser.add_argument("--catchup-enterprises", type=int, default=200, help="stage d city")
    parser.add_argument("--e2e-devices", type=int, default=1000, help="background loggers")
    parser.add_argument("--e2e-rate", type=int, default=2000, help="background frames/s")
    parser.add_argument("--e2e-probes", type=int, default=100)
    parser.add_argument("--e2e-warmup", type=float, default=20.0, help="seconds of load first")
    parser.add_argument("--e2e-probe-s", type=float, default=60.0, help="probe phase length")
    parser.add_argument("--e2e-wait-s", type=float, default=30.0, help="probe given up after")
    parser.add_argument(
        "--e2e-workers", type=int, default=1, help="validation and alarm worker processes each"
    )
    parser.add_argument("--e2e-ingest-workers", type=int, default=1, help="ingest workers")
    parser.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.produce:
        asyncio.run(produce(arguments))
    else:
        print(json.dumps(asyncio.run(main(arguments)), indent=2))
