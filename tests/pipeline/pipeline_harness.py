"""The whole pipeline on the real broker: simulator → ingest → validation → alarm.

* **Simulator** (`ecowatt_simulator`): a synthetic fleet in which half of the enterprises
  measure their control facilities on a second data logger (so that a control device can go
  offline while production runs), registered on a private registry topic; a `ManualClock`
  moved one step at a time (`Simulator.advance`), so the data of every device up to the step
  has been sent *and answered* before any device goes further.
* **Ingest** (`IngestServer`, in process, on a free port): the real TCP server, Kafka
  producer, Redis session store (private prefix). The per-connection rate limit is lifted
  (a device sends a simulated hour in well under a second), automatic backfill and clock
  correction are off (the platform's wall clock is days away from the simulated one).
* **Validation**: the service's own pieces (binder subscribed to the readings topic, checks,
  finding store, outbox relay) with a clock pinned after the simulated period; the day
  close is run explicitly (`run_day`). `data_latency` is disabled through the rule book
  (receive times are the wall clock: an accelerated run is always "late").
* **Alarm**: the real service app (`create_app(build_service(clock=…))`, Kafka, PostgreSQL,
  API through ASGI), fake clock pinned after the simulated period; the offline timer is
  not run (silence is judged in data time, the readings being a replay).

Topics are private (a uuid in their names); the readings topic has one partition, so the
binder sees the fleet's readings in arrival order and the alarm service every enterprise's
points in data-time order (within a step), as a live deployment would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from asgi_lifespan import LifespanManager
from ecowatt_alarm.service import build_service
from ecowatt_alarm.settings import AlarmSettings
from ecowatt_alarm.tables import state_change
from ecowatt_ingest.server import IngestServer
from ecowatt_ingest.settings import IngestSettings
from ecowatt_kernel.app import create_app
from ecowatt_kernel.bus import KafkaBus, KafkaConnection, Record
from ecowatt_kernel.contracts import TOPICS, RegistryChange, TopicSpec, encode
from ecowatt_kernel.db import Database
from ecowatt_kernel.identity import DataScope, Identity, Role, TokenSigner, dev_key_pair
from ecowatt_kernel.outbox import OutboxRelay
from ecowatt_kernel.redis_client import create_redis
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_simulator import (
    DeviceSettings,
    DeviceSpec,
    FaultConfig,
    Fleet,
    GroundTruth,
    ManualClock,
    PointSpec,
    Simulator,
)
from ecowatt_validation import rules as VR
from ecowatt_validation.binding import Binder
from ecowatt_validation.checks import Checks, enterprise_info
from ecowatt_validation.findings import FindingStore
from ecowatt_validation.models import OUTBOX
from ecowatt_validation.reference import credit_check_char
from ecowatt_validation.rulebook import RuleBook
from ecowatt_validation.service import SERVICE as VALIDATION
from pydantic import SecretStr
from sqlalchemy import select, text

TZ = ZoneInfo("Asia/Shanghai")
PASSWORD = "654321"  # one PW for the fleet: one scrypt hash registers every device


def local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC)


# ------------------------------------------------------------------------------- the fleet


def split_fleet(fleet: Fleet, every: int = 2) -> Fleet:
    """Every `every`-th enterprise measures its control facilities on a second logger.

    Device B's MN is device A's with `E` turned into `F`; its circuits are renumbered from 1.
    """
    devices: dict[str, DeviceSpec] = {}
    for index, (mn, device) in enumerate(sorted(fleet.devices.items())):
        controls = [p for p in device.points if p.point_type == "control"]
        if index % every or not controls:
            devices[mn] = device
            continue
        b_mn = mn[:9] + "F" + mn[10:]
        keep = tuple(p for p in device.points if p.point_type != "control")
        moved = tuple(
            replace(p, device_mn=b_mn, circuit=i) for i, p in enumerate(controls, start=1)
        )
        devices[mn] = replace(device, points=keep)
        devices[b_mn] = replace(device, mn=b_mn, points=moved)
    return Fleet(
        devices=devices,
        enterprises=fleet.enterprises,
        facilities=fleet.facilities,
        groups=fleet.groups,
        points={},
        city_seed=fleet.city_seed,
        seed=fleet.seed,
    )


def registry_changes(fleet: Fleet) -> list[RegistryChange]:
    """The fleet's archive, with a valid credit code and an industry class per enterprise
    (the simulator's synthetic enterprises have neither: the archive checks would flag
    every one)."""
    out: list[RegistryChange] = []
    for index, change in enumerate(fleet.registry_changes()):
        if change.entity == "enterprise":
            body = f"91610113MA{index:07d}"
            snapshot = {
                **change.snapshot,
                "credit_code": body + credit_check_char(body),
                "industry_code": "3011",
                "om_company": "运维甲",
            }
            change = change.model_copy(update={"snapshot": snapshot})
        out.append(change)
    return out


def point_of(fleet: Fleet, point_id: str) -> PointSpec:
    return fleet.points[point_id]


# --------------------------------------------------------------------------- the pipeline


@dataclass
class PipelineOptions:
    day: date
    enterprises: int = 24
    seed: int = 5
    circuits: tuple[int, int] = (4, 5)
    split_every: int = 2
    faults: FaultConfig = field(default_factory=FaultConfig)
    rtd_interval_s: int = 60
    sample_s: int = 60
    """The meters' sampling step (minute statistics come from these samples)."""
    step_s: float = 120.0
    tail_min: int = 30
    """Minutes simulated past the day's end (the alarm service closes the day on them)."""


@dataclass
class PipelineRun:
    options: PipelineOptions
    fleet: Fleet
    sim: Simulator
    truth: GroundTruth
    day_start: datetime
    day_end: datetime
    findings: set[tuple[str, str, date]]
    finding_rows: list[Any]
    point_daily: dict[str, Any]
    alarms: list[dict[str, Any]]
    state_changes: dict[str, list[tuple[datetime, str]]]
    filings: list[dict[str, Any]]
    timings: dict[str, float]
    counts: dict[str, int]


class Signer:
    def __init__(self) -> None:
        self.signer = TokenSigner(dev_key_pair()[0], issuer="ecowatt-auth", audience="ecowatt")

    def headers(
        self, role: Role, *, districts: tuple[str, ...] = (), enterprises: tuple[str, ...] = ()
    ) -> dict[str, str]:
        scope = DataScope(
            all=role in (Role.CITY_SUPERVISOR, Role.ADMIN, Role.OM_OPERATOR),
            districts=frozenset(districts),
            enterprises=frozenset(enterprises),
        )
        identity = Identity(subject=f"{role.value}-user", roles=frozenset({role}), scope=scope)
        token = self.signer.sign(identity, now=datetime.now(UTC))
        return {"Authorization": f"Bearer {token}"}


class Pipeline:
    """Start everything, drive the simulator through the day, collect what came out."""

    def __init__(
        self,
        options: PipelineOptions,
        *,
        kafka_bootstrap: str,
        database_url: str,
        redis_url: str,
    ) -> None:
        self.options = options
        self.bootstrap = kafka_bootstrap
        self.database_url = database_url
        self.redis_url = redis_url
        tag = uuid.uuid4().hex[:8]
        self.prefix = f"test.pipeline.{tag}"
        self.topics = {
            name: f"{self.prefix}.{name}"
            for name in (
                "registry",
                "frames",
                "readings",
                "commands",
                "results",
                "audit",
                "points",
                "findings",
                "tasks",
                "states",
                "alarms",
            )
        }
        self.day_start = local_midnight(options.day)
        self.day_end = local_midnight(options.day + timedelta(days=1))
        self.end = self.day_end + timedelta(minutes=options.tail_min)
        self.after = (self.end + timedelta(minutes=10)).timestamp()
        """What the validation and alarm clocks say: shortly after the simulated period."""
        self.signer = Signer()
        self.stack = AsyncExitStack()
        self.timings: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        base = Fleet.synthetic(
            options.enterprises,
            circuits=options.circuits,
            seed=options.seed,
            password=PASSWORD,
            transformers=True,  # secondary values on the wire, scaled back by validation
        )
        self.fleet = split_fleet(base, options.split_every)
        self.clock = ManualClock(self.day_start)
        self.sim: Simulator | None = None
        self.bound = 0

    # ------------------------------------------------------------------------ set-up

    async def __aenter__(self) -> Pipeline:
        await self.stack.__aenter__()
        try:
            await self._start()
        except BaseException:
            await self.stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.aclose()

    async def _start(self) -> None:
        started = time.perf_counter()
        topics = self.topics
        bus = KafkaBus(
            KafkaConnection(bootstrap_servers=self.bootstrap, client_id="pipeline-test"),
            linger_ms=2,
        )
        await bus.start()
        self.stack.push_async_callback(bus.stop)
        self.bus = bus
        registry_spec = dataclasses.replace(TOPICS["registry.changes"], name=topics["registry"])
        await bus.ensure_topics(
            [
                registry_spec,
                TopicSpec(topics["frames"], "MN", "", partitions=2),
                # One partition: the binder sees the readings in the order they arrived.
                TopicSpec(topics["readings"], "MN", "", partitions=1),
                TopicSpec(topics["commands"], "MN", "", partitions=1),
                TopicSpec(topics["results"], "MN", "", partitions=1),
                TopicSpec(topics["audit"], "actor", "", partitions=1),
                TopicSpec(topics["points"], "enterprise", "", partitions=4),
                TopicSpec(topics["findings"], "enterprise", "", partitions=2),
            ]
        )
        changes = registry_changes(self.fleet)
        await bus.publish([encode(c, topic=topics["registry"]) for c in changes])
        self.counts["registry_changes"] = len(changes)
        await self._start_validation()
        await self._start_alarm()
        await self._start_ingest()
        self.timings["start_s"] = time.perf_counter() - started

    async def _start_validation(self) -> None:
        database = Database(self.database_url, schema="validation", pool_size=4)
        assert VALIDATION.migrations is not None
        await database.migrate(VALIDATION.migrations)
        self.stack.push_async_callback(database.dispose)
        view = RegistryView(topic=self.topics["registry"])
        await view.attach(self.bus, group_prefix=f"{self.prefix}.validation")
        rulebook = RuleBook()
        async with database.transaction() as session:
            await rulebook.load(session)
            await rulebook.update(
                session,
                VR.DATA_LATENCY,
                params=None,
                enabled=False,
                actor="pipeline-test",
                reason="accelerated run: receive times are the wall clock, days after the data",
            )
        findings = FindingStore(
            rules=rulebook, enterprise=enterprise_info(view), topic=self.topics["findings"]
        )
        relay = OutboxRelay(engine=database.engine, bus=self.bus, table=OUTBOX, poll_interval_s=0.2)

        def clock() -> datetime:
            return datetime.fromtimestamp(self.after, UTC)

        binder = Binder(
            database=database,
            bus=self.bus,
            view=view,
            findings=findings,
            rules=rulebook,
            timezone="Asia/Shanghai",
            valid_flags=frozenset({"N"}),
            sample_cns=frozenset({"2011", "2051"}),
            points_topic=self.topics["points"],
            on_committed=relay.wake,
            clock=clock,
        )
        self.checks = Checks(
            database=database,
            view=view,
            findings=findings,
            rules=rulebook,
            timezone="Asia/Shanghai",
            clock=clock,
            on_committed=relay.wake,
        )
        self.validation_db = database
        self.validation_view = view
        self.binder = binder

        async def handle(records: Sequence[Record]) -> None:
            await binder.handle(records)
            self.bound += len(records)

        subscription = await self.bus.subscribe(
            group=f"{self.prefix}.validation.bind",
            topics=[self.topics["readings"]],
            handler=handle,
            max_batch=2000,
        )
        self.stack.push_async_callback(subscription.stop)
        await relay.start()
        self.stack.push_async_callback(relay.stop)
        self.stack.push_async_callback(view.subscription.stop)  # type: ignore[union-attr]
        await view.wait_ready(timeout_s=60)

    async def _start_alarm(self) -> None:
        topics = self.topics
        settings = AlarmSettings(
            environment="test",
            bus_backend="kafka",
            kafka_bootstrap_servers=self.bootstrap,
            database_url=SecretStr(self.database_url),
            redis_url=SecretStr(self.redis_url),
            alarm_points_topic=topics["points"],
            alarm_registry_topic=topics["registry"],
            alarm_tasks_topic=topics["tasks"],
            alarm_findings_topic=topics["findings"],
            alarm_states_topic=topics["states"],
            alarm_alarms_topic=topics["alarms"],
            alarm_consumer_prefix=f"{self.prefix}.alarm",
            alarm_notify_enabled=False,
            alarm_tick_s=24 * 3600.0,
            alarm_stats_flush_s=3600.0,
            log_level="WARNING",
        )
        self.alarm_settings = settings
        app = create_app(build_service(clock=lambda: self.after), settings=settings)
        manager = await self.stack.enter_async_context(
            LifespanManager(app, startup_timeout=120, shutdown_timeout=60)
        )
        self.alarm_ctx = app.state.context
        transport = httpx.ASGITransport(app=manager.app)
        self.alarm_api = await self.stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://alarm")
        )
        processor = self.alarm_ctx.state["processor"]
        enterprises = {d.enterprise_id for d in self.fleet.devices.values()}
        await _wait_for(
            lambda: all(processor.models.get(e) is not None for e in enterprises),
            "the alarm service's archive",
        )

    async def _start_ingest(self) -> None:
        topics = self.topics
        settings = IngestSettings(
            environment="test",
            hj212_host="127.0.0.1",
            hj212_port=0,
            redis_prefix=f"{self.prefix}.ingest",
            instance_id=f"pipeline-{uuid.uuid4().hex[:6]}",
            raise_nofile=False,
            topic_frames=topics["frames"],
            topic_readings=topics["readings"],
            topic_commands=topics["commands"],
            topic_command_results=topics["results"],
            topic_audit=topics["audit"],
            topic_registry=topics["registry"],
            # A device sends a simulated hour in a fraction of a second: no rate limit.
            max_frames_per_s=1_000_000.0,
            frame_burst=1_000_000,
            # The platform's wall clock is days after the simulated one: no 1012, no backfill.
            max_clock_drift_s=10 * 365 * 86400.0,
            backfill_enabled=False,
        )
        redis = create_redis(self.redis_url)
        self.stack.push_async_callback(redis.aclose)
        view = RegistryView(topic=topics["registry"])
        await view.attach(self.bus, group_prefix=f"{self.prefix}.ingest")
        self.stack.push_async_callback(view.subscription.stop)  # type: ignore[union-attr]
        await view.wait_ready(timeout_s=60)
        server = IngestServer(settings, bus=self.bus, redis=redis, registry=view)
        await server.start(wait_for_registry=False)
        self.stack.push_async_callback(server.stop)
        await asyncio.wait_for(server.serving.wait(), 10)
        self.ingest = server

    # ---------------------------------------------------------------------- the outages

    async def file_outage(
        self, enterprise_id: str, facility_ids: list[str], start: datetime, end: datetime
    ) -> dict[str, Any]:
        """File a planned outage as the enterprise and approve it as its district."""
        district = self.fleet.enterprises[enterprise_id].district_code
        r = await self.alarm_api.post(
            "/filings",
            json={
                "enterprise_id": enterprise_id,
                "facility_ids": facility_ids,
                "reason": "治理设施计划检修",
                "category": "maintenance",
                "starts_at": start.isoformat(),
                "ends_at": end.isoformat(),
            },
            headers=self.signer.headers(Role.ENTERPRISE_USER, enterprises=(enterprise_id,)),
        )
        assert r.status_code == 201, r.text
        filing = r.json()
        r = await self.alarm_api.post(
            f"/filings/{filing['id']}/approve",
            json={"note": "同意"},
            headers=self.signer.headers(Role.DISTRICT_OFFICER, districts=(district,)),
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    # --------------------------------------------------------------------------- the run

    def simulator(self) -> Simulator:
        if self.sim is None:
            assert self.ingest.port is not None
            self.sim = Simulator(
                self.fleet,
                port=self.ingest.port,
                faults=self.options.faults,
                clock=self.clock,
                settings=DeviceSettings(
                    rtd_interval_s=self.options.rtd_interval_s,
                    sample_s=self.options.sample_s,
                ),
            )
        return self.sim

    async def run(self, filings: list[dict[str, Any]] | None = None) -> PipelineRun:
        sim = self.simulator()
        wall = time.perf_counter()
        duration = self.end.timestamp() - self.clock.start
        task = asyncio.create_task(sim.run(duration, drain_timeout=30))
        t = self.clock.start
        try:
            while t < self.end.timestamp():
                t = min(t + self.options.step_s, self.end.timestamp())
                await sim.advance(t, timeout_s=120)
            answered = await task
        finally:
            if not task.done():
                task.cancel()
        assert answered, f"unanswered uploads: {sim.log.unacked()}"
        self.timings["simulate_s"] = time.perf_counter() - wall
        self.counts["frames"] = sim.log.summary()["frames"]
        wall = time.perf_counter()
        await self._caught_up(f"{self.prefix}.validation.bind", self.topics["readings"])
        self.timings["validation_lag_s"] = time.perf_counter() - wall
        await self._caught_up(f"{self.prefix}.alarm.points", self.topics["points"])
        self.timings["alarm_lag_s"] = time.perf_counter() - wall
        wall = time.perf_counter()
        await self.checks.run_day(self.options.day, trigger="pipeline-test")
        self.timings["day_close_s"] = time.perf_counter() - wall
        return await self._collect(sim, filings or [])

    async def _caught_up(self, group: str, topic: str, limit_s: float = 300.0) -> None:
        """Wait until `group` has committed every record of `topic`."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            deadline = time.monotonic() + limit_s
            while True:
                ends = await self.bus.end_offsets(topic)
                offsets = await admin.list_consumer_group_offsets(group)
                done = {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == topic}
                if all(done.get(p, 0) >= end for p, end in ends.items()):
                    self.counts[f"records:{topic.rsplit('.', 1)[-1]}"] = sum(ends.values())
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"{group} did not catch up on {topic}: {done} / {ends}")
                await asyncio.sleep(0.1)
        finally:
            await admin.close()

    async def _collect(self, sim: Simulator, filings: list[dict[str, Any]]) -> PipelineRun:
        day = self.options.day
        async with self.validation_db.session() as session:
            rows = list(
                await session.execute(
                    text(
                        "SELECT d.rule_code, d.subject_id, d.day, d.evidence, f.subject_kind"
                        " FROM validation.finding_days d"
                        " JOIN validation.findings f ON f.id = d.finding_id"
                    )
                )
            )
            daily = {
                r.point_id: r
                for r in await session.execute(
                    text("SELECT * FROM validation.point_daily WHERE day = :d"), {"d": day}
                )
            }
        occurrences = {(r.rule_code, r.subject_id, r.day) for r in rows}
        headers = self.signer.headers(Role.CITY_SUPERVISOR)
        r = await self.alarm_api.get("/alarms", params={"page_size": 500}, headers=headers)
        assert r.status_code == 200, r.text
        alarms = r.json()["items"]
        for a in alarms:
            for k in ("first_at", "last_at", "recovered_at"):
                if a[k]:
                    a[k] = datetime.fromisoformat(a[k])
        changes: dict[str, list[tuple[datetime, str]]] = {}
        database = self.alarm_ctx.database
        async with database.engine.connect() as connection:
            result = await connection.execute(
                select(state_change.c.subject_id, state_change.c.since, state_change.c.state)
                .where(state_change.c.subject_kind == "facility")
                .order_by(state_change.c.id)
            )
            for subject, since, state in result:
                changes.setdefault(subject, []).append((since, state))
        return PipelineRun(
            options=self.options,
            fleet=self.fleet,
            sim=sim,
            truth=sim.ground_truth,
            day_start=self.day_start,
            day_end=self.day_end,
            findings=occurrences,
            finding_rows=rows,
            point_daily=daily,
            alarms=alarms,
            state_changes=changes,
            filings=filings,
            timings=dict(self.timings),
            counts=dict(self.counts),
        )


async def _wait_for(check: Any, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
