"""From an alarm and a finding back to the raw frames (原始报文) that produced them.

The platform runs as standalone runs it: ingest (with its archive), validation and alarm
apps sharing one durable in-process bus (`DiskBus`), the real PostgreSQL and Redis. Simulated
loggers send two hours of data with a control facility switched off while production runs
(R1) and meter resets (a data-quality finding). The alarm's and the finding's `frames` links
must name the devices behind them and their evidence window; followed through ingest's
archive (the gateway path without its `/api/ingest-hj212` prefix) they must return exactly
those devices' frames in that window — among them the frame of every sample the alarm's
evidence series shows — and nothing to a caller whose scope does not hold the enterprise."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_alarm.service import build_service as alarm_service
from ecowatt_alarm.settings import AlarmSettings
from ecowatt_kernel.app import Infrastructure, ServiceSpec, create_app
from ecowatt_kernel.bus import DiskBus
from ecowatt_kernel.contracts import TopicSpec
from ecowatt_kernel.identity import DataScope, Role, verifier_from_settings
from ecowatt_kernel.redis_client import Redis
from ecowatt_kernel.settings import KernelSettings
from ecowatt_simulator import DeviceSettings, FaultConfig, Fleet, SimClock, Simulator, publish_fleet
from ecowatt_validation.service import SERVICE as VALIDATION
from ecowatt_validation.settings import ValidationSettings
from pydantic import SecretStr

from .conftest import Topics
from .test_archive import CITY, bearer, ingest_service
from .test_archive_replay import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 local: production runs
GATEWAY_PREFIX = "/api/ingest-hj212"
STRANGER = bearer(Role.ENTERPRISE_USER, scope=DataScope(enterprises=frozenset({"nobody"})))


@asynccontextmanager
async def service_client(
    spec: ServiceSpec, settings: KernelSettings, bus: DiskBus, redis: Redis, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        spec,
        settings=settings,
        infrastructure=Infrastructure(
            bus=bus,
            redis=redis,
            database_url=database_url,
            verifier=verifier_from_settings(settings),
        ),
    )
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client


async def follow(
    ingest: httpx.AsyncClient, url: str, headers: Any = CITY
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Every frame the link's query returns (all pages), and the query itself."""
    assert url.startswith(GATEWAY_PREFIX + "/archive/frames"), url
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        answer = await ingest.get(
            parts.path.removeprefix(GATEWAY_PREFIX),
            params={**query, "page": str(page), "page_size": "500"},
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        items += body["items"]
        if page >= (body["pages"] or 1):
            return items, query
        page += 1


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


async def test_alarm_and_finding_link_to_the_frames_that_produced_them(
    tmp_path: Path, redis: Redis, empty_database: str
) -> None:
    bus = DiskBus(tmp_path / "bus")
    await bus.start()
    tag = uuid.uuid4().hex[:8]
    name = f"test.links.{tag}"
    topics = Topics(*(f"{name}.{k}" for k in ("frames", "readings", "cmd", "res", "audit")))
    registry, points, findings = f"{name}.registry", f"{name}.points", f"{name}.findings"
    await bus.ensure_topics([TopicSpec(registry, "entity", "", partitions=1, compacted=True)])
    fleet = Fleet.synthetic(3, circuits=3, seed=1820, password="654321")
    await publish_fleet(bus, fleet, topic=registry)
    device_of = {p.id: p.device_mn for p in fleet.points.values()}
    validation_settings = ValidationSettings(
        environment="test",
        database_url=SecretStr(empty_database),
        readings_topic=topics.readings,
        points_topic=points,
        registry_topic=registry,
        findings_topic=findings,
        validation_consumer_prefix=f"validation-{tag}",
    )
    alarm_settings = AlarmSettings(
        environment="test",
        database_url=SecretStr(empty_database),
        alarm_points_topic=points,
        alarm_registry_topic=registry,
        alarm_findings_topic=findings,
        alarm_tasks_topic=f"{name}.tasks",
        alarm_states_topic=f"{name}.states",
        alarm_alarms_topic=f"{name}.alarms",
        alarm_consumer_prefix=f"alarm-{tag}",
        alarm_notify_enabled=False,
    )
    try:
        async with (
            ingest_service(
                bus=bus,
                redis=redis,
                database_url=empty_database,
                topics=topics,
                registry_topic=registry,
                max_clock_drift_s=10**9,
                backfill_enabled=False,
            ) as ingest,
            service_client(VALIDATION, validation_settings, bus, redis, empty_database) as quality,
            service_client(alarm_service(), alarm_settings, bus, redis, empty_database) as alarms,
        ):
            sim = Simulator(
                fleet,
                port=ingest.server.port,
                clock=SimClock.fast(START),
                settings=DeviceSettings(sample_s=60, hour_data=False, day_data=False),
                faults=FaultConfig(
                    shares={"control_off": 1.0, "meter_reset": 1.0},
                    showcase_from=START.timestamp(),
                    meter_reset_after_s=(900.0, 1200.0),
                ),
            )
            assert await sim.run(timedelta(hours=2), drain_timeout=90), sim.log.unacked()
            sent = {d.mn: d.acked_count for d in sim.log}
            await ingest.archived(sum(sent.values()), received_from=START.isoformat())

            # ---- an alarm: its evidence window, per device behind its points
            async def an_r1_alarm() -> Any:
                page = (await alarms.get("/alarms", params={"rule": "R1"}, headers=CITY)).json()
                return page["items"][0] if page.get("items") else None

            listed = await eventually(an_r1_alarm, "an R1 alarm", limit_s=180)
            await asyncio.sleep(3.0)  # (let its evidence grow a little more)
            alarm = (await alarms.get(f"/alarms/{listed['id']}", headers=CITY)).json()
            links = alarm["frames"]
            expected_mns = {device_of[p] for p in alarm["point_ids"]}
            assert {link["mn"] for link in links} == expected_mns and expected_mns
            start = parse(alarm["first_at"]) - timedelta(minutes=30)
            end = parse(alarm["recovered_at"] or alarm["last_at"])
            series = alarm["evidence"]["series"]
            for link in links:
                assert set(link["point_ids"]) == {
                    p for p in alarm["point_ids"] if device_of[p] == link["mn"]
                }
                assert (parse(link["from"]), parse(link["to"])) == (start, end)
                frames, query = await follow(ingest.client, link["url"])
                assert query["mn"] == [link["mn"]]
                assert frames, f"the frames of {link['mn']} behind alarm {alarm['id']}"
                for frame in frames:
                    assert frame["mn"] == link["mn"]
                    assert start <= parse(frame["data_time_utc"]) <= end
                # every sample of the evidence curve came from one of these frames
                accepted = {parse(f["data_time_utc"]) for f in frames if f["verdict"] == "accepted"}
                samples = {parse(t) for p in link["point_ids"] for t, _ in series.get(p, [])}
                assert samples and samples <= accepted, sorted(samples - accepted)[:5]
                # the same window as text: those frames' exact bytes
                text_path = urlsplit(link["text_url"])
                text = await ingest.client.get(
                    text_path.path.removeprefix(GATEWAY_PREFIX),
                    params=parse_qs(text_path.query),
                    headers=CITY,
                )
                assert text.status_code == 200, text.text
                lines = [line for line in text.text.split("\r\n") if line.startswith("##")]
                assert sorted(lines) == sorted(f["text"].rstrip("\r\n") for f in frames)
                hidden, _ = await follow(ingest.client, link["url"], headers=STRANGER)
                assert hidden == [], "the archive applies the follower's scope"

            # ---- a finding: the day it occurred, per device behind its subject
            async def a_point_finding() -> Any:
                page = (
                    await quality.get(
                        "/findings",
                        params={"status": "all", "subject_kind": "point"},
                        headers=CITY,
                    )
                ).json()
                return page["items"][0] if page.get("items") else None

            listed = await eventually(a_point_finding, "a finding about a point", limit_s=180)
            finding = (await quality.get(f"/findings/{listed['id']}", headers=CITY)).json()
            mn = device_of[finding["subject_id"]]
            assert [(f["mn"], f["point_ids"]) for f in finding["frames"]] == [
                (mn, [finding["subject_id"]])
            ]
            day = datetime.fromisoformat(finding["last_day"]).date()
            link = finding["frames"][0]
            assert parse(link["from"]) == datetime.combine(day, time(), tzinfo=TZ)
            assert parse(link["to"]) < datetime.combine(day + timedelta(days=1), time(), tzinfo=TZ)
            frames, _ = await follow(ingest.client, link["url"])
            assert {f["mn"] for f in frames} == {mn}
            # the whole run lies in that local day: every data frame the device sent
            everything = await ingest.archived(0, mn=mn, received_from=START.isoformat())
            data_frames = {f["frame_id"] for f in everything["items"] if f["data_time_utc"]}
            assert everything["total"] <= 500 and len(data_frames) >= 100
            assert {f["frame_id"] for f in frames} == data_frames
    finally:
        await bus.stop()
