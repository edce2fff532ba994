"""A real alarm service for the alarm tests: Kafka bus, PostgreSQL, Redis, private topics.

One service instance serves the whole package (starting one takes seconds); the synthetic
city is published once and the tests read what it produced. The service's clock is a fake
one pinned to the end of the city's data, so that timers (offline, escalation) and quiet
hours are under the tests' control.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_alarm.dependencies import PROCESSOR
from ecowatt_alarm.processor import AlarmProcessor
from ecowatt_alarm.service import build_service
from ecowatt_alarm.settings import AlarmSettings
from ecowatt_kernel.app import ServiceContext, create_app
from ecowatt_kernel.contracts import Event, encode
from ecowatt_kernel.db import scratch_database
from ecowatt_kernel.identity import DataScope, Identity, Role, TokenSigner, dev_key_pair
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "support"))

from alarm_city import SyntheticCity

CITY_DAY = date(2026, 11, 20)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingSms:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, phone: str, text: str) -> str:
        self.sent.append((phone, text))
        return "ok"


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append(
            {"body": json.loads(body), "signature": self.headers.get("X-EcoWatt-Signature")}
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@dataclass
class Harness:
    app: Any
    client: httpx.AsyncClient
    ctx: ServiceContext
    settings: AlarmSettings
    clock: FakeClock
    sms: RecordingSms
    webhook: list[dict[str, Any]]
    database_url: str
    signer: TokenSigner = field(
        default_factory=lambda: TokenSigner(
            dev_key_pair()[0], issuer="ecowatt-auth", audience="ecowatt"
        )
    )

    @property
    def processor(self) -> AlarmProcessor:
        return PROCESSOR.get(self.ctx)

    def headers(
        self,
        role: Role,
        *,
        districts: tuple[str, ...] = (),
        enterprises: tuple[str, ...] = (),
        subject: str | None = None,
    ) -> dict[str, str]:
        scope = DataScope(
            all=role in (Role.CITY_SUPERVISOR, Role.ADMIN, Role.OM_OPERATOR),
            districts=frozenset(districts),
            enterprises=frozenset(enterprises),
        )
        identity = Identity(
            subject=subject or f"{role.value}-user", roles=frozenset({role}), scope=scope
        )
        token = self.signer.sign(identity, now=datetime.now(UTC))
        return {"Authorization": f"Bearer {token}"}

    async def publish(self, events: list[Event], topic: str) -> None:
        for i in range(0, len(events), 2000):
            await self.ctx.bus.publish([encode(e, topic=topic) for e in events[i : i + 2000]])

    async def wait_for(self, check: Callable[[], Any], limit_s: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + limit_s
        while not check():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {check}")
            await asyncio.sleep(0.05)


@pytest.fixture(scope="package")
async def alarm_database(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url) as url:
        yield url


@pytest.fixture(scope="package")
def city() -> SyntheticCity:
    return SyntheticCity(f"T{uuid.uuid4().hex[:6]}", CITY_DAY)


@pytest.fixture(scope="package")
async def harness(
    kafka_bootstrap: str, redis_url: str, alarm_database: str, city: SyntheticCity
) -> AsyncIterator[Harness]:
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    prefix = f"test.alarm.{uuid.uuid4().hex[:8]}"
    settings = AlarmSettings(
        environment="test",
        bus_backend="kafka",
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=SecretStr(alarm_database),
        redis_url=SecretStr(redis_url),
        alarm_points_topic=f"{prefix}.points",
        alarm_registry_topic=f"{prefix}.registry",
        alarm_tasks_topic=f"{prefix}.tasks",
        alarm_findings_topic=f"{prefix}.findings",
        alarm_states_topic=f"{prefix}.states",
        alarm_alarms_topic=f"{prefix}.alarms",
        alarm_consumer_prefix=prefix,
        alarm_webhook_urls=(f"http://127.0.0.1:{server.server_port}/hook",),
        alarm_webhook_secret=SecretStr("test-secret"),
        alarm_quiet_hours=None,
        alarm_attachment_max_bytes=64 * 1024,
        alarm_attachment_max_count=2,
        alarm_export_max_rows=10,
        alarm_webhook_allowed_networks=("127.0.0.0/8",),  # the local webhook server
        alarm_tick_s=3600.0,
    )
    clock = FakeClock(city.end.timestamp())
    sms = RecordingSms()
    app = create_app(build_service(clock=clock, sms=sms), settings=settings)
    try:
        async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://alarm") as client:
                yield Harness(
                    app, client, app.state.context, settings, clock, sms, received, alarm_database
                )
    finally:
        server.shutdown()


@dataclass
class CityRun:
    city: SyntheticCity
    readings: int
    alarms: list[dict[str, Any]]
    ended_at: datetime


@pytest.fixture(scope="package")
async def city_run(harness: Harness, city: SyntheticCity) -> CityRun:
    """Publish the archive, file and approve the outages, publish stop orders and the
    readings; wait until every reading is applied; then let 10 minutes of silence pass."""
    h, p = harness, harness.processor
    h.clock.now = city.end.timestamp()
    changes = city.registry_changes()
    await h.publish(changes, h.settings.alarm_registry_topic)  # type: ignore[arg-type]
    await h.wait_for(lambda: all(p.models.get(e.id) for e in city.enterprises))
    for filing in city.filings():
        enterprise = next(e for e in city.enterprises if e.id == filing.enterprise_id)
        r = await h.client.post(
            "/filings",
            json={
                "enterprise_id": filing.enterprise_id,
                "facility_ids": list(filing.facility_ids),
                "reason": filing.reason,
                "starts_at": filing.start.isoformat(),
                "ends_at": filing.end.isoformat(),
            },
            headers=h.headers(Role.ENTERPRISE_USER, enterprises=(filing.enterprise_id,)),
        )
        assert r.status_code == 201, r.text
        r = await h.client.post(
            f"/filings/{r.json()['id']}/approve",
            json={"note": "同意"},
            headers=h.headers(Role.DISTRICT_OFFICER, districts=(enterprise.district,)),
        )
        assert r.status_code == 200, r.text
    tasks = city.control_tasks()
    await h.publish(tasks, h.settings.alarm_tasks_topic)  # type: ignore[arg-type]
    await h.wait_for(lambda: sum(len(v) for v in p.suppressions.orders.values()) >= len(tasks))
    readings = list(city.readings())
    start = p.readings_applied
    await h.publish(readings, h.settings.alarm_points_topic)  # type: ignore[arg-type]
    await h.wait_for(lambda: p.readings_applied - start >= len(readings), limit_s=180)
    # Past the lateness bound: devices that stopped are known to be silent.
    h.clock.now = (city.end + timedelta(seconds=h.settings.alarm_lateness_s + 60)).timestamp()
    await p.tick()
    await p.relay.drain()
    r = await h.client.get(
        "/alarms", params={"page_size": 500}, headers=h.headers(Role.CITY_SUPERVISOR)
    )
    assert r.status_code == 200, r.text
    ours = {e.id for e in city.enterprises}  # other tests' enterprises share the service
    alarms = [a for a in r.json()["items"] if a["enterprise_id"] in ours]
    for a in alarms:
        for k in ("first_at", "last_at", "recovered_at"):
            if a[k]:
                a[k] = datetime.fromisoformat(a[k])
    return CityRun(city, len(readings), alarms, city.end)
