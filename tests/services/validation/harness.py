"""A validation service wired on the real database and a real bus, for tests and benchmarks.

Pieces are the ones `service.on_startup` builds; topics are private (a uuid suffix) so that
tests never see other engineers' data. Registry snapshots and readings are published on the
bus; `drain()` waits until the binder has handled everything published.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.bus import Bus, Subscription
from ecowatt_kernel.contracts import (
    DeviceSnapshot,
    EnterpriseSnapshot,
    FacilitySnapshot,
    PointSnapshot,
    RegistryChange,
    Snapshot,
    TelemetryReading,
    TopicSpec,
    decode,
    encode,
)
from ecowatt_kernel.db import Database
from ecowatt_kernel.outbox import OutboxRelay
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_validation.binding import Binder
from ecowatt_validation.checks import Checks, enterprise_info
from ecowatt_validation.findings import FindingStore
from ecowatt_validation.models import OUTBOX
from ecowatt_validation.rulebook import RuleBook
from ecowatt_validation.runtime import Runtime
from ecowatt_validation.settings import ValidationSettings
from sqlalchemy import text

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 20)
ENTITY_OF = {
    EnterpriseSnapshot: "enterprise",
    FacilitySnapshot: "facility",
    PointSnapshot: "point",
    DeviceSnapshot: "device",
}


def local(day: date, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A UTC datetime for a local wall-clock time on `day`."""
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=TZ).astimezone(UTC)


def change(snapshot: Snapshot, revision: int = 1, entity: str | None = None) -> RegistryChange:
    return RegistryChange(
        entity=entity or ENTITY_OF[type(snapshot)],
        entity_id=snapshot.id,
        operation="upsert",
        revision=revision,
        changed_at=datetime.now(UTC),
        snapshot=snapshot.model_dump(mode="json"),
    )


def reading(
    mn: str,
    t: datetime,
    items: dict[str, dict[str, str]],
    *,
    cn: str = "2011",
    received_at: datetime | None = None,
    history: bool = False,
) -> TelemetryReading:
    return TelemetryReading(
        idempotency_key=f"{mn}|{cn}|{t.isoformat()}",
        mn=mn,
        cn=cn,
        st="31",
        data_time=t,
        received_at=received_at or t + timedelta(seconds=3),
        items=items,
        history=history,
    )


def meter(
    circuit: int, power: float | None, energy: float | None, flag: str = "N", **extra: str
) -> dict[str, dict[str, str]]:
    """Items of one circuit in the default profile: power (xe01), counter (xe02)."""
    items: dict[str, dict[str, str]] = {}
    if power is not None:
        items[f"xe01{circuit:02d}"] = {"Rtd": f"{power:.3f}", "Flag": flag}
    if energy is not None:
        items[f"xe02{circuit:02d}"] = {"Rtd": f"{energy:.2f}", "Flag": flag}
    for code, value in extra.items():
        items[code] = {"Rtd": value, "Flag": flag}
    return items


@dataclass
class Harness:
    bus: Bus
    database: Database
    settings: ValidationSettings
    view: RegistryView
    rulebook: RuleBook
    findings: FindingStore
    binder: Binder
    checks: Checks
    relay: OutboxRelay
    runtime: Runtime
    now: list[datetime] = field(default_factory=lambda: [local(DAY + timedelta(days=1), 0, 20)])
    subscription: Subscription | None = None
    published: int = 0
    handled: int = 0
    revision: int = 0

    @classmethod
    async def start(cls, bus: Bus, database_url: str, **settings: Any) -> Harness:
        suffix = uuid.uuid4().hex[:8]
        config = ValidationSettings(
            environment="test",
            readings_topic=f"test.readings.{suffix}",
            points_topic=f"test.points.{suffix}",
            registry_topic=f"test.registry.{suffix}",
            findings_topic=f"test.findings.{suffix}",
            **settings,
        )
        await bus.ensure_topics(
            [
                TopicSpec(config.readings_topic, "MN", "", partitions=4),
                TopicSpec(config.points_topic, "enterprise", "", partitions=4),
                TopicSpec(config.registry_topic, "entity", "", partitions=2, compacted=True),
                TopicSpec(config.findings_topic, "enterprise", "", partitions=2),
            ]
        )
        database = Database(database_url, schema="validation", pool_size=4)
        from ecowatt_validation.service import SERVICE

        assert SERVICE.migrations is not None
        await database.migrate(SERVICE.migrations)
        view = RegistryView(topic=config.registry_topic)
        rulebook = RuleBook()
        async with database.transaction() as session:
            await rulebook.load(session)
        findings = FindingStore(
            rules=rulebook, enterprise=enterprise_info(view), topic=config.findings_topic
        )
        relay = OutboxRelay(engine=database.engine, bus=bus, table=OUTBOX, poll_interval_s=0.2)
        holder: list[Harness] = []

        def clock() -> datetime:
            return holder[0].now[0]

        binder = Binder(
            database=database,
            bus=bus,
            view=view,
            findings=findings,
            rules=rulebook,
            timezone=config.timezone,
            valid_flags=config.valid_flag_set,
            sample_cns=config.sample_cn_set,
            points_topic=config.points_topic,
            clock=clock,
        )
        checks = Checks(
            database=database,
            view=view,
            findings=findings,
            rules=rulebook,
            timezone=config.timezone,
            clock=clock,
        )
        runtime = Runtime(config, database, view, rulebook, findings, binder, checks, relay, [])
        harness = cls(
            bus, database, config, view, rulebook, findings, binder, checks, relay, runtime
        )
        holder.append(harness)
        await view.attach(bus, group_prefix=f"test-{suffix}")

        async def handle(records: Any) -> None:
            await binder.handle(records)
            harness.handled += len(records)

        harness.subscription = await bus.subscribe(
            group=f"test-{suffix}.bind",
            topics=[config.readings_topic],
            handler=handle,
            max_batch=1000,
        )
        return harness

    async def stop(self) -> None:
        if self.subscription is not None:
            await self.subscription.stop()
        if self.view.subscription is not None:
            await self.view.subscription.stop()
        await self.relay.stop()
        await self.database.dispose()

    # ----------------------------------------------------------------------- data in

    async def archive(self, snapshots: Iterable[Snapshot], *, wait: bool = True) -> None:
        changes = []
        for s in snapshots:
            self.revision += 1
            changes.append(change(s, self.revision))
        await self.bus.publish([encode(c, topic=self.settings.registry_topic) for c in changes])
        if wait:
            for _ in range(400):
                if all(
                    self.view.get(c.entity, c.entity_id) is not None
                    and self.view._revisions.get((c.entity, c.entity_id), 0) >= c.revision
                    for c in changes
                ):
                    return
                await asyncio.sleep(0.025)
            raise AssertionError("registry view did not catch up")

    async def send(self, readings: Iterable[TelemetryReading], *, wait: bool = True) -> None:
        messages = [encode(r, topic=self.settings.readings_topic) for r in readings]
        for start in range(0, len(messages), 5000):
            await self.bus.publish(messages[start : start + 5000])
        self.published += len(messages)
        if wait:
            await self.drain()

    async def drain(self, timeout_s: float = 120.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.handled < self.published:
            if loop.time() > deadline:
                raise AssertionError(f"binder handled {self.handled} of {self.published}")
            await asyncio.sleep(0.02)

    # --------------------------------------------------------------------- checks

    async def run_day(self, day: date = DAY) -> dict[str, Any]:
        self.now[0] = max(self.now[0], local(day + timedelta(days=1), 0, 20))
        return await self.checks.run_day(day, trigger="test")

    async def findings_of(
        self, rule: str | None = None, *, status: str | None = "open"
    ) -> list[Any]:
        sql = "SELECT * FROM validation.findings WHERE true"
        params: dict[str, Any] = {}
        if rule:
            sql += " AND rule_code = :rule"
            params["rule"] = rule
        if status:
            sql += " AND status = :status"
            params["status"] = status
        async with self.database.session() as session:
            return list(await session.execute(text(sql + " ORDER BY subject_id"), params))

    async def occurrences(self, day: date | None = None) -> set[tuple[str, str, date]]:
        async with self.database.session() as session:
            rows = await session.execute(
                text(
                    "SELECT rule_code, subject_id, day FROM validation.finding_days"
                    + (" WHERE day = :day" if day else "")
                ),
                {"day": day} if day else {},
            )
            return {(r.rule_code, r.subject_id, r.day) for r in rows}

    async def subjects(self, rule: str, day: date = DAY) -> set[str]:
        return {s for r, s, d in await self.occurrences(day) if r == rule}

    async def daily_row(self, point_id: str, day: date = DAY) -> Any:
        async with self.database.session() as session:
            return (
                await session.execute(
                    text("SELECT * FROM validation.point_daily WHERE point_id = :p AND day = :d"),
                    {"p": point_id, "d": day},
                )
            ).first()

    def published_points(self) -> list[Any]:
        from ecowatt_kernel.bus import InProcessBus

        assert isinstance(self.bus, InProcessBus)
        return [decode(r).data for r in self.bus.read_all(self.settings.points_topic)]

    def published_findings(self) -> list[Any]:
        from ecowatt_kernel.bus import InProcessBus

        assert isinstance(self.bus, InProcessBus)
        return [decode(r).data for r in self.bus.read_all(self.settings.findings_topic)]


# --------------------------------------------------------------------------- archive


def enterprise(eid: str = "E1", **kw: Any) -> EnterpriseSnapshot:
    values: dict[str, Any] = {
        "id": eid,
        "updated_at": datetime.now(UTC),
        "name": f"企业{eid}",
        "credit_code": "91350100M000100Y43",
        "district_code": "610113",
        "zone": "XA-GX",
        "industry_code": "3011",
        "om_company": "运维甲",
    }
    values.update(kw)
    return EnterpriseSnapshot(**values)


def facility(fid: str, kind: str, eid: str = "E1", **kw: Any) -> FacilitySnapshot:
    return FacilitySnapshot(
        id=fid, updated_at=datetime.now(UTC), enterprise_id=eid, kind=kind, name=fid, **kw
    )


def device(mn: str, eid: str = "E1", **kw: Any) -> DeviceSnapshot:
    return DeviceSnapshot(id=mn, mn=mn, updated_at=datetime.now(UTC), enterprise_id=eid, **kw)


def point(
    pid: str, point_type: str, mn: str, circuit: int, eid: str = "E1", **kw: Any
) -> PointSnapshot:
    values: dict[str, Any] = {
        "id": pid,
        "updated_at": datetime.now(UTC),
        "enterprise_id": eid,
        "point_type": point_type,
        "name": pid,
        "device_mn": mn,
        "circuit": circuit,
        "start_stop_kw": 5.0,
        "rated_kw": 100.0,
        "commissioned_at": local(DAY - timedelta(days=30)),
        "expected_interval_s": 60,
    }
    values.update(kw)
    return PointSnapshot(**values)


def complete_enterprise(eid: str = "E1", mn: str | None = None, **kw: Any) -> list[Snapshot]:
    """An enterprise with a healthy archive: total, production and control points on one device."""
    mn = mn or f"MN{eid}"
    return [
        enterprise(eid, **kw),
        facility(f"{eid}-F1", "production", eid),
        facility(f"{eid}-F2", "control", eid),
        device(mn, eid),
        point(f"{eid}-PT", "total", mn, 1, eid),
        point(f"{eid}-PP", "production", mn, 2, eid, facility_id=f"{eid}-F1"),
        point(f"{eid}-PC", "control", mn, 3, eid, facility_id=f"{eid}-F2"),
    ]
