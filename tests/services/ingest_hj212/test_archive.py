"""The raw-frame archive, with the ingest service as it runs (create_app, migrations, the TCP
server, the archive consumer) against the real broker, PostgreSQL and Redis: every frame
stored with the exact bytes the device sent, queried by MN, time, verdict and reason within
the caller's scope, downloaded as text and as Excel, found from a reading, a PointReading's
source key and a finding's or an alarm's subject; partitions compressed and expired."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import ecowatt_hj212 as hj212
import httpx
import pytest
from asgi_lifespan import LifespanManager
from bearer import FreshBearer
from ecowatt_ingest.archive.service import ArchiveWriter, maintain
from ecowatt_ingest.server import IngestServer
from ecowatt_ingest.service import SERVICE
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.wire import frame_message, new_trace_id
from ecowatt_kernel.app import Infrastructure, ServiceContext, create_app
from ecowatt_kernel.bus import Bus, KafkaBus, Record
from ecowatt_kernel.contracts import (
    EnterpriseSnapshot,
    PointSnapshot,
    RegistryChange,
    TelemetryReading,
    TopicSpec,
    encode,
)
from ecowatt_kernel.identity import (
    DataScope,
    Identity,
    Role,
    signer_from_settings,
    verifier_from_settings,
)
from ecowatt_kernel.redis_client import Redis
from ecowatt_kernel.settings import KernelSettings
from openpyxl import load_workbook
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from .conftest import NOW, DeviceClient, TopicReader, Topics, device_snapshot, new_mn, upload

pytestmark = pytest.mark.integration

SIGNER = signer_from_settings(KernelSettings(environment="test"))


def bearer(*roles: Role, scope: DataScope, subject: str = "u-1") -> Mapping[str, str]:
    """A token valid for a day: these are made at import, and a loaded machine's suite can
    take longer than the usual 15 minutes to reach them."""
    identity = Identity(subject=subject, roles=frozenset(roles), scope=scope)
    return FreshBearer(SIGNER, identity)


CITY = bearer(Role.CITY_SUPERVISOR, scope=DataScope(all=True), subject="city")
OFFICER = bearer(Role.DISTRICT_OFFICER, scope=DataScope(districts=frozenset({"610113"})))
OWNER = bearer(Role.ENTERPRISE_USER, scope=DataScope(enterprises=frozenset({"E2"})))


# ----------------------------------------------------------------------------- harness


def change(snapshot: Any, entity: str) -> RegistryChange:
    return RegistryChange(
        entity=entity,
        entity_id=snapshot.id,
        operation="upsert",
        revision=1,
        changed_at=NOW,
        snapshot=snapshot.model_dump(mode="json"),
    )


def city(mns: dict[str, str]) -> list[RegistryChange]:
    """Two enterprises in two districts, a device each with one point."""
    changes = []
    for enterprise, district in (("E1", "610113"), ("E2", "610104")):
        changes.append(
            change(
                EnterpriseSnapshot(
                    id=enterprise, updated_at=NOW, name=enterprise, district_code=district
                ),
                "enterprise",
            )
        )
        device = device_snapshot(mns[enterprise]).model_copy(update={"enterprise_id": enterprise})
        changes.append(change(device, "device"))
        point = PointSnapshot(
            id=f"P-{enterprise}",
            updated_at=NOW,
            enterprise_id=enterprise,
            facility_id=f"F-{enterprise}",
            point_type="production",
            name="p",
            device_mn=mns[enterprise],
        )
        changes.append(change(point, "point"))
    return changes


async def publish_registry(bus: Bus, topic: str, changes: Sequence[RegistryChange]) -> None:
    await bus.ensure_topics([TopicSpec(topic, "entity", "registry", partitions=1)])
    await bus.publish([encode(c, topic=topic) for c in changes])


@dataclass
class Running:
    client: httpx.AsyncClient
    server: IngestServer
    context: ServiceContext
    settings: IngestSettings

    async def archived(self, count: int, headers: Mapping[str, str] = CITY, **params: Any) -> Any:
        """The archive list once it holds `count` frames matching `params` (waits)."""
        for _ in range(600):
            page = await self.client.get(
                "/archive/frames", params={"page_size": 500, **params}, headers=headers
            )
            assert page.status_code == 200, page.text
            if page.json()["total"] >= count:
                return page.json()
            await asyncio.sleep(0.1)
        raise AssertionError(f"archive did not reach {count} frames for {params}: {page.json()}")


@asynccontextmanager
async def ingest_service(
    *,
    bus: Bus,
    redis: Redis,
    database_url: str,
    topics: Topics,
    registry_topic: str,
    **overrides: Any,
) -> AsyncIterator[Running]:
    """The ingest service as `create_app` builds it, on a shared (started) bus."""
    settings = IngestSettings(
        environment="test",
        hj212_host="127.0.0.1",
        hj212_port=0,
        raise_nofile=False,
        redis_prefix=f"test-archive-{uuid.uuid4().hex[:8]}",
        instance_id=f"test-{uuid.uuid4().hex[:6]}",
        database_url=SecretStr(database_url),
        topic_registry=registry_topic,
        wait_for_registry_s=60,
        **{**topics.settings(), **overrides},
    )
    infrastructure = Infrastructure(
        bus=bus,
        redis=redis,
        database_url=database_url,
        verifier=verifier_from_settings(settings),
    )
    app = create_app(SERVICE, settings=settings, infrastructure=infrastructure)
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
        context: ServiceContext = app.state.context
        server = context.state["ingest"]
        await asyncio.wait_for(server.serving.wait(), 60)
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield Running(client, server, context, settings)


@pytest.fixture
async def service(
    kafka: KafkaBus, redis: Redis, topics: Topics, empty_database: str
) -> AsyncIterator[tuple[Running, dict[str, str]]]:
    mns = {"E1": new_mn(), "E2": new_mn(), "unknown": new_mn()}
    registry_topic = f"{topics.frames}.registry"
    await publish_registry(kafka, registry_topic, city(mns))
    async with ingest_service(
        bus=kafka,
        redis=redis,
        database_url=empty_database,
        topics=topics,
        registry_topic=registry_topic,
    ) as running:
        yield running, mns


# ----------------------------------------------------------------------------- tests


async def test_the_archive_keeps_the_exact_bytes_with_verdict_and_reason(service) -> None:
    running, mns = service
    device = await DeviceClient.connect(running.server.port)
    sent: list[bytes] = []
    for minute in range(3):
        frame = hj212.encode(upload(mns["E1"], data_time=f"2026112608{minute:02d}00"))
        sent.append(frame)
        await device.send(frame)
        await device.expect("9014")
    lower = hj212.encode(upload(mns["E1"], data_time="20261126080300"))
    lower = lower[:-6] + lower[-6:-2].lower() + b"\r\n"  # lower-case CRC: accepted as sent
    sent.append(lower)
    await device.send(lower)
    await device.expect("9014")
    await device.send(sent[0])  # a re-send: recorded as a duplicate
    await device.expect("9014")
    bad = hj212.encode(upload(mns["E1"], data_time="20261126080400"))
    bad = bad[:-6] + (b"0000" if bad[-6:-2] != b"0000" else b"1111") + b"\r\n"
    await device.send(b"AT+CSQ\r\n" + bad)
    await asyncio.sleep(0.3)
    stranger = await DeviceClient.connect(running.server.port)
    unknown = hj212.encode(upload(mns["unknown"]))
    await stranger.send(unknown)
    await stranger.expect("9011")  # strict: an unknown MN is refused (QnRtn=4), and archived

    page = await running.archived(7, mn=mns["E1"])
    items = page["items"]
    verdicts = sorted(i["verdict"] for i in items)
    assert verdicts == ["accepted"] * 4 + ["duplicate"] + ["rejected"] * 2, verdicts
    reasons = {i["reason_code"]: i for i in items if i["verdict"] == "rejected"}
    assert set(reasons) == {"garbage", "crc_mismatch"}, "the junk and the bad frame, each"
    rejected = reasons["crc_mismatch"]
    assert "CRC" in rejected["reason"]
    # Exact bytes, frame by frame, through the raw download.
    for item in items:
        raw = await running.client.get(f"/archive/frames/{item['frame_id']}/raw", headers=CITY)
        assert raw.status_code == 200
        assert raw.headers["content-type"].startswith("text/plain")
        assert raw.content in {*sent, bad, b"AT+CSQ\r\n"}, raw.content
        assert len(raw.content) == item["size"]
    accepted_raw = set()
    for item in items:
        if item["verdict"] == "accepted":
            detail = await running.client.get(f"/archive/frames/{item['frame_id']}", headers=CITY)
            accepted_raw.add(base64.b64decode(detail.json()["raw_base64"]))
    assert accepted_raw == set(sent), "each accepted frame's bytes exactly as the device sent"
    # Filters: verdict, reason, CN; the junk before the bad frame is a rejected span too.
    only = await running.client.get(
        "/archive/frames", params={"mn": mns["E1"], "verdict": "duplicate"}, headers=CITY
    )
    assert [i["verdict"] for i in only.json()["items"]] == ["duplicate"]
    crc = await running.client.get(
        "/archive/frames", params={"reason_code": "crc_mismatch"}, headers=CITY
    )
    assert [i["frame_id"] for i in crc.json()["items"]] == [rejected["frame_id"]]
    assert reasons["garbage"]["text"] == "AT+CSQ\r\n"
    # The text download of a window: the frames' bytes, one per line, in arrival order.
    window = {
        "mn": mns["E1"],
        "verdict": "accepted",
        "received_from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "received_to": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
    }
    download = await running.client.get("/archive/frames.txt", params=window, headers=CITY)
    assert download.status_code == 200
    assert download.content == b"".join(sent)
    annotated = await running.client.get(
        "/archive/frames.txt", params={**window, "meta": "true"}, headers=CITY
    )
    assert annotated.content.count(b"# ") == 4 and f" {mns['E1']} accepted".encode() in (
        annotated.content
    )
    # Excel with Chinese headers.
    workbook = await running.client.get(
        "/archive/frames", params={"mn": mns["E1"], "format": "xlsx"}, headers=CITY
    )
    sheet = load_workbook(io.BytesIO(workbook.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("接收时间", "设备MN", "命令编码") and len(rows) == 1 + len(items)
    assert {r[5] for r in rows[1:]} == {"接收", "重复", "拒收"}
    for client in (device, stranger):
        await client.close()


async def test_scope_decides_which_frames_a_caller_sees(service) -> None:
    running, mns = service
    for name, mn in mns.items():
        client = await DeviceClient.connect(running.server.port)
        await client.send(upload(mn))
        await client.expect("9011" if name == "unknown" else "9014")  # strict refuses, archives
        await client.close()
    city = await running.archived(3)
    ids = {i["mn"]: i["frame_id"] for i in city["items"]}
    assert set(ids) >= set(mns.values())

    assert (await running.client.get("/archive/frames")).status_code == 401
    officer = (await running.client.get("/archive/frames", headers=OFFICER)).json()
    assert {i["mn"] for i in officer["items"]} == {mns["E1"]}, "the officer's district only"
    owner = (await running.client.get("/archive/frames", headers=OWNER)).json()
    assert {i["mn"] for i in owner["items"]} == {mns["E2"]}, "the enterprise's own device"
    asked = await running.client.get("/archive/frames", params={"mn": mns["E2"]}, headers=OFFICER)
    assert asked.json()["total"] == 0, "asking for another district's MN shows nothing"
    for mn in (mns["E2"], mns["unknown"]):
        hidden = await running.client.get(f"/archive/frames/{ids[mn]}", headers=OFFICER)
        assert hidden.status_code == 404
        raw = await running.client.get(f"/archive/frames/{ids[mn]}/raw", headers=OFFICER)
        assert raw.status_code == 404
    text_download = await running.client.get(
        "/archive/frames.txt",
        params={
            "received_from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "received_to": datetime.now(UTC).isoformat(),
        },
        headers=OWNER,
    )
    assert mns["E2"].encode() in text_download.content
    assert mns["E1"].encode() not in text_download.content
    assert mns["unknown"].encode() not in text_download.content


async def test_a_reading_a_point_reading_and_an_alarm_lead_back_to_their_frames(
    service, kafka: KafkaBus, topics: Topics
) -> None:
    running, mns = service
    readings = await TopicReader(kafka, topics.readings).start()
    device = await DeviceClient.connect(running.server.port)
    sent = {}
    for minute in (10, 11, 12):
        data_time = f"2026112608{minute}00"
        frame = hj212.encode(upload(mns["E1"], data_time=data_time))
        sent[data_time] = frame
        await device.send(frame)
        await device.expect("9014")
    await device.close()
    events = await readings.wait_for(
        lambda e: sum(isinstance(x, TelemetryReading) and x.mn == mns["E1"] for x in e) >= 3,
        "three readings",
    )
    await readings.stop()
    reading = next(e for e in events if isinstance(e, TelemetryReading) and e.mn == mns["E1"])
    await running.archived(3, mn=mns["E1"])

    # A TelemetryReading → its frame (received_at narrows it to one partition).
    found = await running.client.get(
        f"/archive/frames/{reading.frame_id}",
        params={"received_at": reading.received_at.isoformat()},
        headers=CITY,
    )
    assert found.status_code == 200, found.text
    data_time = reading.idempotency_key.split("|")[2]
    assert base64.b64decode(found.json()["raw_base64"]) == sent[data_time]
    # A PointReading's source_key (the reading's idempotency key) → the same frame.
    linked = await running.client.get(
        "/archive/frames", params={"source_key": reading.idempotency_key}, headers=CITY
    )
    assert [i["frame_id"] for i in linked.json()["items"]] == [str(reading.frame_id)]
    hidden = await running.client.get(
        "/archive/frames", params={"source_key": reading.idempotency_key}, headers=OWNER
    )
    assert hidden.json()["total"] == 0
    bad = await running.client.get(
        "/archive/frames", params={"source_key": "no-bars"}, headers=CITY
    )
    assert bad.status_code == 422 and "MN|CN|DataTime" in bad.json()["detail"]
    # An alarm or finding: its subject (point → device) and window in data time.
    start = datetime(2026, 11, 26, 0, 10, tzinfo=UTC)  # 08:10 Shanghai
    window = await running.client.get(
        "/archive/frames",
        params={
            "subject_kind": "point",
            "subject_id": "P-E1",
            "data_from": start.isoformat(),
            "data_to": (start + timedelta(minutes=1)).isoformat(),
        },
        headers=CITY,
    )
    assert sorted(i["data_time"] for i in window.json()["items"]) == [
        "20261126081000",
        "20261126081100",
    ]
    for kind, subject in (("facility", "F-E1"), ("enterprise", "E1"), ("device", mns["E1"])):
        linked = await running.client.get(
            "/archive/frames",
            params={"subject_kind": kind, "subject_id": subject, "data_from": start.isoformat()},
            headers=CITY,
        )
        assert linked.json()["total"] == 3, (kind, linked.json())
    other = await running.client.get(
        "/archive/frames",
        params={"subject_kind": "point", "subject_id": "P-E2", "data_from": start.isoformat()},
        headers=CITY,
    )
    assert other.json()["total"] == 0


async def test_frames_are_compressed_redelivery_is_harmless_and_old_days_expire(
    service,
) -> None:
    running, mns = service
    db = running.context.database
    settings = running.settings
    tz = settings.timezone
    writer = ArchiveWriter(db=db, settings=settings)
    values = [  # a 4-circuit meter's 2011 as the simulator sends it: ≈ 800 bytes
        (f"xe{circuit:02d}{code}-{suffix}", value)
        for circuit in range(1, 5)
        for code, suffix, value in (
            ("01", "Rtd", "41.27"),
            ("01", "Flag", "N"),
            ("02", "Rtd", "123456.78"),
            ("02", "Flag", "N"),
            ("03", "Rtd", "0.93"),
            ("11", "Rtd", "61.2"),
            ("12", "Rtd", "60.8"),
            ("13", "Rtd", "62.0"),
            ("21", "Rtd", "226.1"),
            ("22", "Rtd", "225.7"),
        )
    ]
    raw = hj212.encode(upload(mns["E1"], values=values))
    assert len(raw) > 700
    old = datetime.now(UTC) - timedelta(days=settings.archive_retention_days + 3)
    records = [frame_record(raw, mns["E1"], old), frame_record(raw, mns["E1"], datetime.now(UTC))]
    await writer.handle(records)
    await writer.handle(records)  # redelivered: stored once
    junk = b"##0010QN=1\x00\xff&&\r\n"  # NUL inside the MN: text cannot hold it, bytes can
    nul = frame_record(junk, "EW\x00JUNK", datetime.now(UTC))
    await writer.handle([nul])
    stored = await running.client.get("/archive/frames", params={"mn": "EW\\x00JUNK"}, headers=CITY)
    assert stored.json()["total"] == 1, stored.json()
    raw_back = await running.client.get(
        f"/archive/frames/{stored.json()['items'][0]['frame_id']}/raw", headers=CITY
    )
    assert raw_back.content == junk
    engine = create_async_engine(db.engine.url)
    try:
        async with engine.connect() as connection:
            counts = (
                await connection.execute(
                    text("SELECT count(*) FROM ingest.frames WHERE frame_id = ANY(:ids)"),
                    {"ids": [uuid.UUID(str(_id(r))) for r in records]},
                )
            ).scalar_one()
            assert counts == 2
            names = (
                (
                    await connection.execute(
                        text(
                            "SELECT c.relname FROM pg_inherits i JOIN pg_class c"
                            " ON c.oid = i.inhrelid WHERE i.inhparent = 'ingest.frames'::regclass"
                        )
                    )
                )
                .scalars()
                .all()
            )
            today = datetime.now(UTC).astimezone(ZoneInfo(tz)).date()
            for ahead in range(settings.archive_partitions_ahead + 1):
                assert f"frames_{today + timedelta(days=ahead):%Y%m%d}" in names
            codec, stored = (
                await connection.execute(
                    text(
                        "SELECT raw_codec, octet_length(raw) FROM ingest.frames"
                        " WHERE frame_id = :id"
                    ),
                    {"id": uuid.UUID(str(_id(records[1])))},
                )
            ).one()
            assert codec == "zlib" and stored < len(raw) * 0.6, (codec, stored, len(raw))
        detail = await running.client.get(f"/archive/frames/{_id(records[1])}", headers=CITY)
        assert base64.b64decode(detail.json()["raw_base64"]) == raw, "given back exactly"

        await maintain(db=db, settings=settings)
        async with engine.connect() as connection:
            left = (
                await connection.execute(
                    text("SELECT count(*) FROM ingest.frames WHERE frame_id = ANY(:ids)"),
                    {"ids": [uuid.UUID(str(_id(r))) for r in records]},
                )
            ).scalar_one()
            assert left == 1, "the expired day's partition was dropped"
            assert f"frames_{old.astimezone(ZoneInfo(tz)):%Y%m%d}" not in [
                r[0]
                for r in await connection.execute(
                    text(
                        "SELECT c.relname FROM pg_inherits i JOIN pg_class c"
                        " ON c.oid = i.inhrelid WHERE i.inhparent = 'ingest.frames'::regclass"
                    )
                )
            ]
    finally:
        await engine.dispose()


def frame_record(raw: bytes, mn: str, at: datetime) -> Record:
    message = frame_message(
        "frames",
        raw=raw,
        peer="127.0.0.1:1",
        received_at=at.isoformat(),
        verdict="accepted",
        trace_id=new_trace_id(),
        produced_at=at.isoformat(),
        mn=mn,
        cn="2011",
        qn="1",
    )
    return Record("frames", 0, 0, message.key, message.value, message.headers, 0)


def _id(record: Record) -> str:
    return str(json.loads(record.value)["data"]["frame_id"])
