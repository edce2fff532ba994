"""Stage (d) of `make bench-alarm`: catch-up — how fast a day of the 200-enterprise city
replays end to end, unpaced, and whether its alarms are those of the day played in order.

Ingest, validation and alarm each run in a process of their own (`python -m …`, production
settings, private topics, a fresh database) as in stage (c). The simulator (a process too)
plays yesterday's day of a synthetic fleet of `--catchup-enterprises` enterprises
(`Fleet.synthetic`, 4–5 circuits, facility faults: control off, late
start, early stop, low load, loggers offline, power cuts) **as fast as ingest answers**
(`--fast`: every logger on its own timeline, so an enterprise's loggers arrive out of step),
plus 30 minutes of the next day. The platform's clock is the wall clock: every frame is a day
old — the morning after an outage, or a platform catching up.

Figures: wall seconds from the first frame until ingest, validation and alarm have handled
everything (`…_s`), frames/s and point readings/s over that time, CPU cores each process
used, and the alarm service's re-judgements (its `/metrics` are not needed: the counts come
from the alarms themselves).

Identity: the same `telemetry.points` records, read back from the topic, are played through
the same engine in this process in data-time order, live (each minute arriving half a minute
after its data time, the timer every minute) — the day in order. The alarms in force of both
(rule, subject, start within a minute) must be the same; the differences are listed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from alarm_e2e import (
    PASSWORD,
    Processes,
    _offsets,
    cpu_seconds,
    private_topics,
    service_env,
    start_services,
)
from ecowatt_alarm.engine import Effects, Engine, EnterpriseRuntime, Sample
from ecowatt_alarm.engine.eventtime import Arrival, EventTime
from ecowatt_alarm.model import Learned, ModelCache
from ecowatt_alarm.processor import power_of
from ecowatt_alarm.rules import RuleSet
from ecowatt_alarm.suppression import Suppressions
from ecowatt_kernel.bus import KafkaBus, KafkaConnection, Record
from ecowatt_kernel.contracts import PointReading, RegistryChange, decode, encode
from ecowatt_kernel.identity import DataScope, Identity, Role, TokenSigner, dev_key_pair
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_simulator import Fleet

TZ = ZoneInfo("Asia/Shanghai")
FAULTS = {
    "control_off": 0.15,
    "late_start": 0.1,
    "early_stop": 0.1,
    "low_load": 0.1,
    "offline": 0.1,
    "power_cut": 0.06,
}


async def _read_all(bus: KafkaBus, topic: str, group: str) -> list[Record]:
    """Every record of `topic` (a fresh consumer group reading from the start)."""
    ends = await bus.end_offsets(topic)
    total = sum(ends.values())
    records: list[Record] = []
    done = asyncio.Event()

    async def handle(batch: Any) -> None:
        records.extend(batch)
        if len(records) >= total:
            done.set()

    subscription = await bus.subscribe(group=group, topics=[topic], handler=handle, max_batch=5000)
    try:
        if total:
            await asyncio.wait_for(done.wait(), 1800)
    finally:
        await subscription.stop()
    return records


def in_order(registry: list[Record], points: list[Record], lateness_s: float) -> set[Any]:
    """The day in order through the same engine: (rule, subject, first_at) in force."""
    view = RegistryView()
    for record in registry:
        change = decode(record).data
        if isinstance(change, RegistryChange):
            view.apply(change)
    rules = RuleSet()
    engine = Engine(rules, Suppressions(view))
    events = EventTime(
        engine,
        lateness_s=lateness_s,
        horizon_s=86400.0,
        gap_s=float(rules.state["offline_min_s"]),
    )
    models = ModelCache(view, rules, lambda _: Learned())
    by_minute: dict[float, dict[str, list[Arrival]]] = defaultdict(lambda: defaultdict(list))
    for record in points:
        event = decode(record).data
        if not isinstance(event, PointReading) or event.interval != "realtime":
            continue
        t = event.data_time.timestamp()
        power, voltage = power_of(event) if event.valid else (None, None)
        sample = None if power is None else Sample(t, event.point_id, power, voltage)
        by_minute[t // 60 * 60][event.enterprise_id].append(Arrival(event.mn, t, sample))
    runtimes: dict[str, EnterpriseRuntime] = {}
    kept: dict[str, list[Sample]] = defaultdict(list)
    table: dict[str, dict[str, Any]] = {}

    def work(e: str, now: float, arrivals: list[Arrival] | None) -> None:
        model = models.get(e)
        if model is None:
            return
        rt = runtimes.setdefault(e, EnterpriseRuntime(e))
        fx = Effects()
        if arrivals is None:
            events.advance(rt, model, now, fx)
        else:
            events.offer(rt, model, arrivals, now, fx)
        if events.replay_due(rt, model, now):
            events.replay(rt, model, kept[e] + [s for x, s in fx.retain if x == e], now, fx)
        for x, s in fx.retain:
            kept[x].append(s)
        for x in fx.release:
            kept.pop(x, None)
        for op in fx.alarms:
            a = op.alarm
            if op.op == "retract":
                table[a["id"]]["retracted"] = True
            elif op.op == "open":
                table[a["id"]] = {"rule": a["rule_code"], "subject": a["subject_id"],
                                  "first_at": a["first_at"]}  # fmt: skip
            elif op.op == "amend":
                table[a["id"]]["first_at"] = a["first_at"]

    last = 0.0
    for minute in sorted(by_minute):
        for e, arrivals in sorted(by_minute[minute].items()):
            work(e, minute + 30, arrivals)
        for e in list(runtimes):
            work(e, minute + 45, None)
        last = minute
    for e in list(runtimes):
        work(e, last + lateness_s + 600, None)
    return {
        (a["rule"], a["subject"], a["first_at"]) for a in table.values() if not a.get("retracted")
    }


def differences(a: set[Any], b: set[Any]) -> tuple[list[Any], list[Any]]:
    rest = set(b)
    only = []
    for rule, subject, first in sorted(a):
        hit = next((x for x in rest if x[:2] == (rule, subject) and abs(x[2] - first) <= 60), None)
        if hit is None:
            only.append((rule, subject, first))
        else:
            rest.discard(hit)
    return only, sorted(rest)


async def run(args: Any, *, bootstrap: str, db_url: str, redis_url: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    prefix = f"bench.catchup.{tag}"
    bus = KafkaBus(KafkaConnection(bootstrap_servers=bootstrap))
    await bus.start()
    topic = await private_topics(bus, prefix, 6 * 3_600_000)  # fmt: skip
    seed = 73
    fleet = Fleet.synthetic(  # what the simulator's command line builds from the same seed
        args.catchup_enterprises, circuits=(4, 5), seed=seed, city_seed=seed, password=PASSWORD
    )
    changes = fleet.registry_changes()
    for i in range(0, len(changes), 2000):
        await bus.publish([encode(c, topic=topic["registry"]) for c in changes[i : i + 2000]])
    today = datetime.now(TZ).date()
    day_start = datetime.combine(today - timedelta(days=1), datetime.min.time(), TZ)
    day_end = day_start + timedelta(days=1)
    common = service_env(bootstrap, db_url, redis_url)
    procs = Processes()
    result: dict[str, Any] = {
        "enterprises": args.catchup_enterprises,
        "loggers": len(fleet.devices),
    }
    try:
        services = await start_services(
            procs,
            prefix=prefix,
            topic=topic,
            common=common,
            tag=tag,
            # yesterday's data, the loggers' clocks with them (as in stage c): no 1012, no
            # wall-clock back-fill; the loggers send as fast as they are answered
            ingest_env={
                "ECOWATT_MAX_CLOCK_DRIFT_S": str(30 * 86400),
                "ECOWATT_BACKFILL_ENABLED": "false",
                "ECOWATT_MAX_FRAMES_PER_S": "100000",
                "ECOWATT_FRAME_BURST": "100000",
            },
        )
        validation, alarm, ingest, port = (
            services.validation,
            services.alarm,
            services.ingest,
            services.port,
        )
        alarm_port = services.alarm_port
        roles = {"ingest": ingest.pid, "validation": validation.pid, "alarm": alarm.pid}
        cpu_before = {role: cpu_seconds(pid) for role, pid in roles.items()}
        started = time.perf_counter()
        simulator = procs.start(
            [
                "-m", "ecowatt_simulator", "--target", f"127.0.0.1:{port}",
                "--synthetic-devices", str(args.catchup_enterprises), "--circuits", "4-5",
                "--password", PASSWORD, "--city-seed", str(seed),
                "--fast", "--start", day_start.isoformat(), "--duration", "1470m",
                "--sample-s", "60", "--no-minute", "--no-hour", "--no-day", "--counts-only",
                "--drain-timeout", "120",
                *[a for kind, share in FAULTS.items() for a in ("--fault", f"{kind}={share}")],
            ],
            {},
            stdout=subprocess.PIPE,
        )  # fmt: skip
        roles["simulator"] = simulator.pid
        cpu_before["simulator"] = 0.0
        out, _ = await asyncio.to_thread(simulator.communicate)
        sent = time.perf_counter() - started
        summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        timings = {"simulator_sent_s": round(sent, 1)}
        for name, group, short in (
            ("validation", f"{prefix}.validation.bind", "readings"),
            ("alarm", f"{prefix}.alarm.points", "points"),
        ):
            while True:
                produced, consumed = await _offsets(bootstrap, group, topic[short], bus)
                if consumed >= produced:
                    break
                await asyncio.sleep(0.5)
            timings[f"{name}_done_s"] = round(time.perf_counter() - started, 1)
            result[f"records_{short}"] = produced
        elapsed = time.perf_counter() - started
        cpu = {
            role: round((cpu_seconds(pid) - cpu_before[role]) / elapsed, 2)
            for role, pid in roles.items()
            if role != "simulator"
        }
        # Alarms in force with data of the day: their decisions are made once the devices'
        # data have passed midnight (the 30 minutes of tail).
        await asyncio.sleep(5)
        signer = TokenSigner(dev_key_pair()[0], issuer="ecowatt-auth", audience="ecowatt")
        identity = Identity(
            subject="bench", roles=frozenset({Role.CITY_SUPERVISOR}), scope=DataScope(all=True)
        )
        headers = {"Authorization": f"Bearer {signer.sign(identity)}"}
        fired: list[dict[str, Any]] = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{alarm_port}") as client:
            page = 1
            while True:
                r = await client.get(
                    "/alarms", params={"page": page, "page_size": 500}, headers=headers
                )
                body = r.json()
                fired.extend(body["items"])
                if page >= body["pages"]:
                    break
                page += 1
        end = day_end.timestamp()
        unpaced = {
            (a["rule_code"], a["subject_id"], datetime.fromisoformat(a["first_at"]).timestamp())
            for a in fired
            if a["retracted_at"] is None
        }
        unpaced = {x for x in unpaced if x[2] < end}
        registry = await _read_all(bus, topic["registry"], f"{prefix}.bench-registry")
        points = await _read_all(bus, topic["points"], f"{prefix}.bench-points")
        reference = {x for x in in_order(registry, points, 600.0) if x[2] < end}
        only_unpaced, only_in_order = differences(unpaced, reference)
        frames = summary.get("frames") or 0
        result.update(
            {
                "frames": frames,
                "timings": timings,
                "catch_up_s": round(elapsed, 1),
                "frames_per_s": round(frames / elapsed),
                "points_per_s": round(result["records_points"] / elapsed),
                "cpu_cores": cpu,
                "alarms_unpaced": len(unpaced),
                "alarms_in_order": len(reference),
                "retracted": sum(1 for a in fired if a["retracted_at"] is not None),
                "late": sum(1 for a in fired if a["late"]),
                "identical": not only_unpaced and not only_in_order,
                "only_unpaced": [list(x) for x in only_unpaced[:10]],
                "only_in_order": [list(x) for x in only_in_order[:10]],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
            }
        )
    finally:
        procs.stop()
        await bus.stop()
    return result
