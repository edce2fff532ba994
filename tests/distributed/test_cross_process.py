"""Distributed mode across processes: HJ 212 frames in, alarms out, one service SIGKILLed
mid-stream and restarted by the supervisor, nothing lost.

`tools/distributed.py`'s supervisor runs auth (the gateway), ingest, validation, alarm and
ops each as `python -m ecowatt_<service>` on the real broker, PostgreSQL and Redis (private
topics, a fresh database, a private Redis prefix). The registry is not among them: its outbox
writes the canonical `registry.changes`, so the test publishes its fleet's archive on a
private registry topic itself (as tests/e2e does). People's requests go through the gateway
as they would in production: an administrator logs in there (`POST /api/auth/token`), reads
the platform status from ops and the alarms from alarm through it, and a service that is not
running is a 502 problem, not a hang.

Four enterprises (one logger each: total line, production, control facility) send 45
minutes of 2011 data with the control facility off from minute 10; R1 (产污运行治污未运行,
30-minute confirmation) must open once per enterprise. After the first 20 minutes have gone
through, validation is SIGKILLed; the rest is sent (and acknowledged by ingest: Kafka has
it) while validation is down, and ops must say so; the supervisor restarts validation. Then
every acknowledged frame must be on `hj212.frames`, every reading on `telemetry.readings`,
every (point, minute) on `telemetry.points`, and exactly one R1 per enterprise on `alarms`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import re
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from ecowatt_kernel.bus import KafkaBus, KafkaConnection, Record
from ecowatt_kernel.contracts import (
    TOPICS,
    AlarmChanged,
    FrameReceived,
    PointReading,
    TelemetryReading,
    decode,
    encode,
)
from ecowatt_kernel.db import scratch_database
from ecowatt_simulator import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ENTERPRISES = 4
MINUTES = 45
CONTROL_OFF_FROM = 10  # R1 confirms after 30 min off: opens at minute 40
KILL_AFTER = 20  # minutes sent before validation is killed
PASSWORD = "246810"  # the loggers' HJ 212 password
ADMIN_PASSWORD = "Distributed!Admin-2026"  # the first administrator's (auth, first start)
NEW_PASSWORD = "Distributed!Changed-2027"  # after the forced change at the first login


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


distributed = load(ROOT / "tools" / "distributed.py", "ecowatt_tools_distributed")
# The loggers speaking HJ 212 with the codec (acks matched by QN): the alarm bench's probes.
probes = load(ROOT / "bench" / "alarm_e2e.py", "ecowatt_bench_alarm_e2e")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def log_in(gateway: str) -> dict[str, str]:
    """A real login at the gateway (the administrator auth created at its first start)."""
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        # The first administrator's password is an initial one: it must be changed first.
        changed = await client.post(
            "/api/auth/password",
            json={"username": "admin", "password": ADMIN_PASSWORD, "new_password": NEW_PASSWORD},
        )
        assert changed.status_code in (200, 204), changed.text
        response = await client.post(
            "/api/auth/token", json={"username": "admin", "password": NEW_PASSWORD}
        )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def platform_status(scene: dict[str, Any]) -> dict[str, Any]:
    """`GET /api/ops/status?fresh=true` through the gateway (proxied to the ops process)."""
    async with httpx.AsyncClient(base_url=scene["gateway"], timeout=30) as client:
        response = await client.get("/api/ops/status?fresh=true", headers=scene["bearer"])
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    return status


class Topic:
    """Every record of a topic from its start, decoded (a fresh consumer group)."""

    def __init__(self, bus: KafkaBus, name: str) -> None:
        self.bus, self.name, self.events = bus, name, []  # type: ignore[var-annotated]

    async def start(self) -> Topic:
        async def collect(records: Sequence[Record]) -> None:
            self.events.extend(decode(r).data for r in records)

        await self.bus.subscribe(
            group=f"test.distributed.{uuid.uuid4().hex[:8]}", topics=[self.name], handler=collect
        )
        return self


async def until(what: str, check: Any, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {limit_s:.0f} s")
        await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
async def scene(
    kafka_bootstrap: str, database_url: str, redis_url: str
) -> AsyncIterator[dict[str, Any]]:
    tag = uuid.uuid4().hex[:6]
    topics = {name: f"test.dist.{tag}.{name}" for name in TOPICS}
    bus = KafkaBus(KafkaConnection(bootstrap_servers=kafka_bootstrap))
    await bus.start()
    await bus.ensure_topics(
        [dataclasses.replace(spec, name=topics[spec.name]) for spec in TOPICS.values()]
        + [dataclasses.replace(spec, name=topics[spec.name] + ".dlq") for spec in TOPICS.values()]
    )
    fleet = Fleet.synthetic(ENTERPRISES, circuits=3, seed=915, password=PASSWORD)
    await bus.publish(
        [encode(c, topic=topics["registry.changes"]) for c in fleet.registry_changes()]
    )
    async with scratch_database(database_url) as db_url:
        gateway_port = free_port()
        while any(not distributed.port_free("127.0.0.1", gateway_port + n) for n in range(9)):
            gateway_port = free_port()
        layout = distributed.Layout(
            distributed.Infra(kafka_bootstrap, db_url, redis_url),
            gateway_port=gateway_port,
            hj212_port=free_port(),
            environment="test",
            topics=topics,
            simulator=False,
            log_format="json",
            extra_env={
                "auth": {
                    "ECOWATT_ADMIN_PASSWORD": ADMIN_PASSWORD,
                    "ECOWATT_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/11",
                },
                "ingest-hj212": {
                    "ECOWATT_REDIS_PREFIX": f"test.dist.{tag}",
                    "ECOWATT_BACKFILL_ENABLED": "false",
                    "ECOWATT_COMMANDS_ENABLED": "false",
                },
                "validation": {"ECOWATT_VALIDATION_CONSUMER_PREFIX": f"test.dist.{tag}.validation"},
                "alarm": {
                    "ECOWATT_ALARM_CONSUMER_PREFIX": f"test.dist.{tag}.alarm",
                    "ECOWATT_ALARM_NOTIFY_ENABLED": "false",
                },
            },
        )
        wanted = ("auth", "validation", "alarm", "ops", "ingest-hj212")
        processes = [p for p in layout.processes() if p.name in wanted]
        output: list[str] = []
        supervisor = distributed.Supervisor(processes, restart_delay_s=8.0, output=output.append)
        try:
            try:
                await asyncio.to_thread(supervisor.start)
            except (RuntimeError, TimeoutError) as exc:  # say why, from the process's own words
                raise AssertionError(f"{exc}\n" + "\n".join(output[-60:])) from exc
            gateway = f"http://127.0.0.1:{layout.gateway_port}"
            yield {
                "gateway": gateway,
                "bearer": await log_in(gateway),
                "bus": bus,
                "fleet": fleet,
                "topics": topics,
                "layout": layout,
                "supervisor": supervisor,
                "output": output,
                "tag": tag,
            }
        finally:
            codes = await asyncio.to_thread(supervisor.stop)
            await bus.stop()
        # a clean stop: every service ran its shutdown (consumers committed, connections closed)
        stopped = [line for line in output if "stopped" in line and "ecowatt_kernel.app" in line]
        assert len(stopped) == len(processes), (codes, output[-20:])


def local_minutes(start: datetime) -> Iterator[datetime]:
    for m in range(MINUTES):
        yield start + timedelta(minutes=m)


async def test_frames_in_alarms_out_across_processes_with_validation_killed(
    scene: dict[str, Any],
) -> None:
    bus: KafkaBus = scene["bus"]
    topics: dict[str, str] = scene["topics"]
    layout = scene["layout"]
    supervisor = scene["supervisor"]
    frames = await Topic(bus, topics["hj212.frames"]).start()
    readings = await Topic(bus, topics["telemetry.readings"]).start()
    points = await Topic(bus, topics["telemetry.points"]).start()
    alarms = await Topic(bus, topics["alarms"]).start()

    loggers = [probes.Probe(scene["fleet"], mn) for mn in sorted(scene["fleet"].devices)]
    for logger in loggers:
        for _ in range(60):  # ingest accepts once its registry view has caught up
            try:
                await logger.connect(layout.hj212_port)
                break
            except OSError:
                await asyncio.sleep(1)
    start = (datetime.now(probes.TZ) - timedelta(minutes=90)).replace(
        second=0, microsecond=0, tzinfo=None
    )
    acked: set[tuple[str, str]] = set()

    async def send(minutes: range) -> None:
        waiters = []
        for m in minutes:
            for logger in loggers:
                data, qn = logger.frame(start + timedelta(minutes=m), m < CONTROL_OFF_FROM)
                waiters.append((logger.mn, qn, await logger.send(data, qn)))
        for mn, qn, waiter in waiters:
            await asyncio.wait_for(waiter, 60)  # 9014: ingest has Kafka's acknowledgement
            acked.add((mn, qn))

    # ---- the first 20 minutes, through the whole pipeline
    await send(range(KILL_AFTER))
    first = ENTERPRISES * KILL_AFTER * 3
    await until(
        "the first minutes' points",
        lambda: len({(p.point_id, p.data_time) for p in points.events}) >= first,
        120,
    )

    # ---- validation dies (no shutdown, nothing committed past what it did) mid-stream
    supervisor.kill("validation")
    down = await platform_status(scene)
    validation = next(s for s in down["services"] if s["name"] == "validation")
    assert validation["status"] == "unreachable"
    assert down["status"] == "degraded"
    await send(range(KILL_AFTER, MINUTES))  # ingest still answers: Kafka holds the frames
    killed_restarts = supervisor.processes["validation"].restarts

    # ---- the supervisor restarts it; it takes up where its group committed
    await until(
        "validation restarted",
        lambda: supervisor.processes["validation"].restarts > killed_restarts,
        60,
    )
    await asyncio.to_thread(supervisor.wait_ready, "validation", 120)
    expected_points = ENTERPRISES * MINUTES * 3
    await until(
        "every point reading",
        lambda: len({(p.point_id, p.data_time) for p in points.events}) >= expected_points,
        180,
    )
    await until(
        "one R1 per enterprise",
        lambda: len({a.enterprise_id for a in alarms.events if a.rule_code == "R1"}) >= ENTERPRISES,
        120,
    )
    await asyncio.sleep(3)  # anything duplicated would arrive now

    # ---- nothing lost: count everything against what ingest acknowledged
    assert len(acked) == ENTERPRISES * MINUTES
    received = {(f.mn, f.qn) for f in frames.events if isinstance(f, FrameReceived)}
    assert acked <= received
    assert {f.verdict for f in frames.events} == {"accepted"}
    reading_keys = {(r.mn, r.data_time) for r in readings.events if isinstance(r, TelemetryReading)}
    assert len(reading_keys) == ENTERPRISES * MINUTES
    point_keys = {(p.point_id, p.data_time) for p in points.events if isinstance(p, PointReading)}
    assert len(point_keys) == expected_points
    assert all(p.valid for p in points.events)
    r1 = [a for a in alarms.events if isinstance(a, AlarmChanged) and a.rule_code == "R1"]
    opened = [a for a in r1 if a.change == "opened"]
    by_enterprise = {a.enterprise_id: a for a in opened}
    assert sorted(by_enterprise) == sorted(
        {scene["fleet"].devices[mn].enterprise_id for mn in scene["fleet"].devices}
    )
    assert len({a.alarm_id for a in opened}) == ENTERPRISES  # once each, despite the kill
    off = start + timedelta(minutes=CONTROL_OFF_FROM)
    for alarm in opened:  # the condition began when the control facility went off (data time)
        first = alarm.first_at.astimezone(probes.TZ).replace(tzinfo=None)
        assert off <= first <= off + timedelta(minutes=2), (first, off)

    # ---- and ops sees every process ready again, validation's group caught up
    bind = (f"test.dist.{scene['tag']}.validation.bind", topics["telemetry.readings"])
    status: dict[str, Any] = {}
    for _ in range(30):
        status = await platform_status(scene)
        if {(c["group"], c["topic"]): c["lag"] for c in status["consumers"]}.get(bind) == 0:
            break
        await asyncio.sleep(1)
    assert {s["name"]: s["status"] for s in status["services"]} == {
        "auth": "ready",
        "registry": "unreachable",  # not started in this test
        "control-plan": "unreachable",
        "reporting": "unreachable",
        "validation": "ready",
        "alarm": "ready",
        "ingest-hj212": "ready",
    }
    assert status["devices"]["sessions"] == ENTERPRISES
    groups = {(c["group"], c["topic"]): c["lag"] for c in status["consumers"]}
    assert groups[bind] == 0
    # the alarm process measured each R1's detection (data time → commit; a replay: > 5 min)
    async with httpx.AsyncClient(timeout=10) as client:
        exposition = (await client.get(f"{layout.url('alarm')}/metrics")).text
    assert 'ecowatt_alarm_detection_seconds_count{rule="R1"} 4.0' in exposition
    assert 'ecowatt_alarm_detection_seconds_bucket{le="300.0",rule="R1"} 0.0' in exposition
    assert urlsplit(layout.url("ops")).port == layout.gateway_port + 8

    # ---- people read the result through the gateway: the alarm process answers it
    async with httpx.AsyncClient(base_url=scene["gateway"], timeout=30) as client:
        response = await client.get("/api/alarm/alarms?rule=R1", headers=scene["bearer"])
        assert response.status_code == 200, response.text
        listed = response.json()
        assert listed["total"] == ENTERPRISES
        assert {a["enterprise_id"] for a in listed["items"]} == set(by_enterprise)
        assert response.headers["x-trace-id"]
        # a service that is not running (the registry here) is a clear problem, not a hang
        response = await client.get("/api/registry/enterprises", headers=scene["bearer"])
        assert response.status_code == 502, response.text
        assert response.json()["type"].endswith("upstream-unavailable")
        # and nobody gets through without credentials
        assert (await client.get("/api/alarm/alarms")).status_code == 401
    for logger in loggers:
        await logger.close()


# ------------------------------------------------------------------ metrics named anywhere

# Metrics of the exporters the compose file and docs/deploy.md deploy (names from their
# documentation at the pinned versions; the exporters are not run here).
EXPORTER_METRICS = {
    # quay.io/prometheuscommunity/postgres-exporter v0.16.0
    "pg_up",
    "pg_stat_database_numbackends",
    "pg_database_size_bytes",
    "pg_stat_database_xact_commit",
    "pg_stat_database_xact_rollback",
    # oliver006/redis_exporter v1.67.0
    "redis_up",
    "redis_memory_used_bytes",
    "redis_connected_clients",
    "redis_commands_processed_total",
    # danielqsj/kafka-exporter v1.8.0
    "kafka_brokers",
    "kafka_consumergroup_lag",
    # Prometheus itself, per target
    "up",
}
PROMQL_WORDS = {
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "rate",
    "irate",
    "increase",
    "histogram_quantile",
    "max_over_time",
    "absent",
    "topk",
    "by",
    "without",
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
}


def referenced_metrics(expression: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, ranges, grouping removed)."""
    text = re.sub(r'"[^"]*"', "", expression)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]", n)}


def dashboard_and_rule_metrics() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                for name in referenced_metrics(target["expr"]):
                    found.setdefault(name, set()).add(path.name)
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/ecowatt.rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in referenced_metrics(rule["expr"]):
                found.setdefault(name, set()).add(rule["alert"])
    return found


def exported(exposition: str) -> set[str]:
    """Every series name a scrape can show: declared families with their sample suffixes."""
    names = set()
    for kind_line in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
        name, kind = kind_line
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        if kind == "counter":
            names.add(name if name.endswith("_total") else f"{name}_total")
    return names


def test_referenced_metrics_parser_on_known_expressions() -> None:
    assert referenced_metrics(
        'histogram_quantile(0.95, sum by (le) (rate(x_bucket{rule!="OFFLINE"}[15m]))) > 60'
    ) == {"x_bucket"}
    assert referenced_metrics("sum(a) < 0.8 * max_over_time(sum(a)[1h:1m]) and b > 20") == {
        "a",
        "b",
    }


async def test_every_metric_of_dashboards_and_rules_is_exported(scene: dict[str, Any]) -> None:
    layout = scene["layout"]
    names: set[str] = set()
    async with httpx.AsyncClient(timeout=10) as client:
        # each service's own port (auth's operations port) is what Prometheus scrapes
        for service in ("auth", "ingest-hj212", "validation", "alarm", "ops"):
            response = await client.get(f"{layout.url(service)}/metrics")
            assert response.status_code == 200, service
            names |= exported(response.text)
        # the public gateway serves neither metrics nor readiness (once a web build exists,
        # unknown top-level paths get its index.html: no metrics either)
        for path in ("/api/ops/metrics", "/api/ops/readyz", "/api/auth/metrics"):
            response = await client.get(f"{scene['gateway']}{path}", headers=scene["bearer"])
            assert response.status_code == 404, (path, response.status_code)
        response = await client.get(f"{scene['gateway']}/metrics")
        assert "# TYPE" not in response.text
    wanted = dashboard_and_rule_metrics()
    assert "ecowatt_alarm_detection_seconds_bucket" in wanted
    missing = {
        name: sorted(where)
        for name, where in wanted.items()
        if name not in names and name not in EXPORTER_METRICS
    }
    assert not missing, f"referenced but exported by no service: {missing}"
