"""Replay: archived frames fed through the real validation service again, with progress,
audit and roles — and harmless when repeated.

The platform is run as standalone runs it: ingest and validation apps sharing one durable
in-process bus (`DiskBus`), the real PostgreSQL and Redis. First the simulated devices'
frames arrive while ingest's readings go to a topic nobody reads (readings lost downstream:
the frames are only in the archive); then validation starts and an operator replays the
window: every data frame is bound once. A second replay of the same window changes nothing:
no PointReading is published again and validation's day aggregates are byte for byte the
same."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_kernel.app import Infrastructure, create_app
from ecowatt_kernel.bus import DiskBus
from ecowatt_kernel.contracts import AuditEvent, PointReading, TopicSpec
from ecowatt_kernel.identity import DataScope, Role, verifier_from_settings
from ecowatt_kernel.redis_client import Redis
from ecowatt_simulator import DeviceSettings, Fleet, SimClock, Simulator, publish_fleet
from ecowatt_validation.service import SERVICE as VALIDATION
from ecowatt_validation.settings import ValidationSettings
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from .conftest import TopicReader, Topics
from .test_archive import CITY, bearer, ingest_service

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # 08:00 local
OM = bearer(Role.OM_OPERATOR, scope=DataScope(all=True), subject="om-7")
OFFICER = bearer(Role.DISTRICT_OFFICER, scope=DataScope(districts=frozenset({"610113"})))


async def eventually(check: Callable[[], Any], what: str, limit_s: float = 90.0) -> Any:
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def validation_service(
    bus: DiskBus, redis: Redis, database_url: str, **topics: str
) -> AsyncIterator[None]:
    settings = ValidationSettings(
        environment="test", database_url=SecretStr(database_url), **topics
    )
    app = create_app(
        VALIDATION,
        settings=settings,
        infrastructure=Infrastructure(
            bus=bus,
            redis=redis,
            database_url=database_url,
            verifier=verifier_from_settings(settings),
        ),
    )
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60):
        yield


async def replay(client: httpx.AsyncClient, window: dict[str, str]) -> dict[str, Any]:
    created = await client.post(
        "/archive/replays", json={**window, "reason": "规则修正后重算"}, headers=OM
    )
    assert created.status_code == 202, created.text
    job = created.json()
    assert job["status"] in ("queued", "running") and job["requested_by"] == "om-7"
    progress: list[float] = []

    async def finished() -> Any:
        state = (await client.get(f"/archive/replays/{job['id']}", headers=OM)).json()
        if state["progress"] is not None:
            progress.append(state["progress"])
        return state if state["status"] in ("done", "failed", "cancelled") else None

    state = await eventually(finished, "the replay to finish")
    assert state["status"] == "done", state
    assert state["progress"] == 1.0 and state["processed"] == state["total"]
    assert progress == sorted(progress), "progress only grows"
    return state


async def test_a_replay_binds_what_was_never_bound_and_a_second_one_changes_nothing(
    tmp_path: Path, redis: Redis, empty_database: str
) -> None:
    bus = DiskBus(tmp_path / "bus")
    await bus.start()
    tag = uuid.uuid4().hex[:8]
    topics = Topics(*(f"test.replay.{tag}.{k}" for k in ("frames", "lost", "cmd", "res", "audit")))
    registry, readings = f"test.replay.{tag}.registry", f"test.replay.{tag}.readings"
    points, findings = f"test.replay.{tag}.points", f"test.replay.{tag}.findings"
    await bus.ensure_topics([TopicSpec(registry, "entity", "", partitions=1, compacted=True)])
    fleet = Fleet.synthetic(2, circuits=2, seed=1818, password="654321")
    await publish_fleet(bus, fleet, topic=registry)
    quiet = {"max_clock_drift_s": 10**9, "backfill_enabled": False}
    engine = create_async_engine(empty_database.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        # 1. Frames arrive; their readings go where nobody reads them.
        async with ingest_service(
            bus=bus,
            redis=redis,
            database_url=empty_database,
            topics=topics,
            registry_topic=registry,
            **quiet,
        ) as first:
            sim = Simulator(
                fleet,
                port=first.server.port,
                clock=SimClock.fast(START),
                settings=DeviceSettings(sample_s=60, hour_data=False, day_data=False),
            )
            assert await sim.run(timedelta(minutes=20), drain_timeout=60), sim.log.unacked()
            acked = sum(d.acked_count for d in sim.log)
            await first.archived(acked, verdict="accepted", received_from=START.isoformat())
            window = {
                "received_from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                "received_to": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
            }
            data_frames = (
                await first.client.get(
                    "/archive/frames",
                    params={**window, "verdict": "accepted", "cn": "2011", "page_size": 1},
                    headers=CITY,
                )
            ).json()["total"]
        assert data_frames >= 2 * 20

        # 2. Validation runs; the operator replays the window.
        async with (
            validation_service(
                bus,
                redis,
                empty_database,
                readings_topic=readings,
                points_topic=points,
                registry_topic=registry,
                findings_topic=findings,
            ),
            ingest_service(
                bus=bus,
                redis=redis,
                database_url=empty_database,
                topics=Topics(
                    topics.frames, readings, topics.commands, topics.results, topics.audit
                ),
                registry_topic=registry,
                **quiet,
            ) as second,
        ):
            bound = await TopicReader(bus, points).start()
            audit = await TopicReader(bus, topics.audit).start()
            for refused in (OFFICER, bearer(Role.ENTERPRISE_USER, scope=DataScope(all=True))):
                denied = await second.client.post("/archive/replays", json=window, headers=refused)
                assert denied.status_code == 403
            assert (
                await second.client.post(
                    "/archive/replays",
                    json={
                        "received_from": window["received_to"],
                        "received_to": window["received_from"],
                    },
                    headers=OM,
                )
            ).status_code == 422

            await asyncio.sleep(2.0)
            assert bound.events() == [], "nothing reached validation before the replay"
            state = await replay(second.client, window)
            assert state["published"] >= data_frames
            expected_points = data_frames * 2  # every 2011 binds each of the device's 2 points

            async def all_bound() -> bool:
                got = {(e.point_id, e.data_time) for e in bound.events() if e.cn == "2011"}
                return len(got) >= expected_points

            await eventually(all_bound, "every replayed real-time reading bound")
            await asyncio.sleep(3.0)  # (anything more would arrive now)
            first_pass = [e for e in bound.events() if isinstance(e, PointReading)]
            keys = [(e.point_id, e.cn, e.data_time) for e in first_pass]
            assert len(keys) == len(set(keys)), "each reading bound once"
            async with engine.connect() as connection:
                daily = (
                    await connection.execute(
                        text(
                            "SELECT point_id, day, samples, slots, energy_kwh, p_sum"
                            " FROM validation.point_daily ORDER BY 1, 2"
                        )
                    )
                ).all()
            assert sum(row.samples for row in daily) == expected_points

            # 3. The same window again: nothing changes.
            again = await replay(second.client, window)
            assert again["published"] == state["published"]
            await asyncio.sleep(5.0)
            assert [e for e in bound.events() if isinstance(e, PointReading)] == first_pass
            async with engine.connect() as connection:
                after = (
                    await connection.execute(
                        text(
                            "SELECT point_id, day, samples, slots, energy_kwh, p_sum"
                            " FROM validation.point_daily ORDER BY 1, 2"
                        )
                    )
                ).all()
            assert after == daily

            events = await audit.wait_for(
                lambda e: sum(isinstance(x, AuditEvent) for x in e) >= 2, "two audit events"
            )
            assert {(e.action, e.actor) for e in events} == {("archive.replay", "om-7")}
            listed = (await second.client.get("/archive/replays", headers=OM)).json()
            assert listed["total"] == 2 and all(i["status"] == "done" for i in listed["items"])
            for reader in (bound, audit):
                await reader.stop()
    finally:
        await engine.dispose()
        await bus.stop()
