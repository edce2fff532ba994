"""A real control-plan service for its tests: Kafka bus, PostgreSQL, Redis, private topics.

One service instance serves the package; its clock is a fake one the tests move. A small
city (`city.py`) is published on the private registry topic; readings are published on the
private points topic and recorded by the service's own consumer. Collectors subscribed on
the broker keep what the service published on `control.tasks`, `control.compliance` and
`audit.events`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from asgi_lifespan import LifespanManager
from ecowatt_control_plan.compliance.service import ComplianceJudge
from ecowatt_control_plan.runtime import RUNTIME, Runtime
from ecowatt_control_plan.service import build_service
from ecowatt_control_plan.settings import ControlPlanSettings
from ecowatt_control_plan.telemetry.service import Recorder
from ecowatt_kernel.app import ServiceContext, create_app
from ecowatt_kernel.bus import Record
from ecowatt_kernel.contracts import Event, decode, encode
from ecowatt_kernel.db import scratch_database
from ecowatt_kernel.identity import DataScope, Identity, Role, TokenSigner, dev_key_pair
from ecowatt_kernel.outbox import pending_count
from pydantic import SecretStr

from tests.support.bearer import FreshBearer

from .city import City

SIGNER = TokenSigner(dev_key_pair()[0], issuer="ecowatt-auth", audience="ecowatt")


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def headers(
    role: Role,
    *,
    subject: str | None = None,
    districts: Sequence[str] = (),
    enterprises: Sequence[str] = (),
) -> FreshBearer:
    """Authorization for a caller with one role (city-level roles see everything), signed at
    each use so that module constants outlive the token lifetime on a slow run."""
    scope = DataScope(
        all=role in (Role.CITY_SUPERVISOR, Role.ADMIN, Role.OM_OPERATOR),
        districts=frozenset(districts),
        enterprises=frozenset(enterprises),
    )
    identity = Identity(
        subject=subject or f"{role.value}-user", roles=frozenset({role}), scope=scope
    )
    return FreshBearer(SIGNER, identity)


@dataclass
class Harness:
    client: httpx.AsyncClient
    ctx: ServiceContext
    settings: ControlPlanSettings
    clock: FakeClock
    city: City
    events: dict[str, list[Event]] = field(default_factory=dict)

    @property
    def runtime(self) -> Runtime:
        return RUNTIME.get(self.ctx)

    @property
    def judge(self) -> ComplianceJudge:
        return self.runtime.judge

    @property
    def recorder(self) -> Recorder:
        return self.runtime.recorder

    async def publish(self, events: Sequence[Event], topic: str) -> None:
        for i in range(0, len(events), 5000):
            await self.ctx.bus.publish([encode(e, topic=topic) for e in events[i : i + 5000]])

    async def wait_for(self, check: Callable[[], Any], limit_s: float = 90.0) -> None:
        deadline = asyncio.get_running_loop().time() + limit_s
        while not check():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {check}")
            await asyncio.sleep(0.05)

    async def record(self, readings: Sequence[Event]) -> None:
        """Publish readings on the points topic and wait until the service's consumer has
        committed all of them (it commits once they are durable; counting records handled
        would be fooled by a redelivery)."""
        topic = self.settings.control_plan_points_topic
        await self.publish(readings, topic)
        await self._consumed(f"{self.settings.control_plan_consumer_prefix}.points", topic)

    async def relay_drained(self) -> None:
        """Everything the service queued is on the broker and in the collectors. `drain`
        alone is not enough: it returns 0 while the background relay holds the outbox lock,
        and the collectors consume on their own schedule."""
        relay = self.runtime.relay
        await relay.drain()
        deadline = asyncio.get_running_loop().time() + 90
        while await pending_count(relay.engine, relay.table):
            assert asyncio.get_running_loop().time() < deadline, "the outbox never emptied"
            await asyncio.sleep(0.05)
        for topic in self.collected:
            await self._consumed(self.collector_group(topic), topic)

    async def _consumed(self, group: str, topic: str) -> None:
        """Wait until `group` has committed every record now on `topic`."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            ends = await self.ctx.bus.end_offsets(topic)
            deadline = asyncio.get_running_loop().time() + 180
            while True:
                offsets = await admin.list_consumer_group_offsets(group)
                done = {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == topic}
                if all(done.get(p, 0) >= end for p, end in ends.items()):
                    return
                assert asyncio.get_running_loop().time() < deadline, (group, done, ends)
                await asyncio.sleep(0.1)
        finally:
            await admin.close()

    @property
    def collected(self) -> tuple[str, ...]:
        """The topics whose events the collectors keep."""
        s = self.settings
        return (
            s.control_plan_tasks_topic,
            s.control_plan_compliance_topic,
            s.control_plan_audit_topic,
        )

    def collector_group(self, topic: str) -> str:
        return f"{self.settings.control_plan_consumer_prefix}.collector.{topic}"

    def of(self, topic: str) -> list[Event]:
        return self.events.setdefault(topic, [])


@pytest.fixture(scope="package")
async def control_database(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url) as url:
        yield url


@pytest.fixture(scope="package")
async def harness(
    kafka_bootstrap: str, redis_url: str, control_database: str
) -> AsyncIterator[Harness]:
    prefix = f"test.control.{uuid.uuid4().hex[:8]}"
    settings = ControlPlanSettings(
        environment="test",
        bus_backend="kafka",
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=SecretStr(control_database),
        redis_url=SecretStr(redis_url),
        control_plan_points_topic=f"{prefix}.points",
        control_plan_registry_topic=f"{prefix}.registry",
        control_plan_tasks_topic=f"{prefix}.tasks",
        control_plan_compliance_topic=f"{prefix}.compliance",
        control_plan_audit_topic=f"{prefix}.audit",
        control_plan_consumer_prefix=prefix,
        control_plan_pass_enabled=False,  # the tests run the pass themselves
        control_plan_outbox_poll_s=0.1,
        control_plan_seed_list=False,
    )
    city = City()
    clock = FakeClock(city.start)
    app = create_app(build_service(clock=clock), settings=settings)
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://control") as client:
            ctx: ServiceContext = app.state.context
            h = Harness(client, ctx, settings, clock, city)
            for topic in h.collected:
                sink = h.of(topic)

                async def collect(records: Sequence[Record], sink: list[Event] = sink) -> None:
                    sink.extend(decode(r).data for r in records)

                await ctx.bus.subscribe(
                    group=h.collector_group(topic), topics=[topic], handler=collect
                )
            await h.publish(city.registry_changes(), settings.control_plan_registry_topic)
            view = h.runtime.view
            await h.wait_for(lambda: all(view.enterprise(e.id) for e in city.enterprises))
            await h.wait_for(lambda: len(view.all("point")) >= city.point_count())
            yield h


# ------------------------------------------------------------------------ the city's list

LIST_HEADERS = (
    "措施编号",
    "企业编号",
    "对象类型",
    "对象编号",
    "措施",
    "减排比例(%)",
    "允许负荷(%额定功率)",
    "错峰时段",
    "退出时间(分钟)",
    "豁免理由",
    "告知文本",
)
KIND_ZH = {"enterprise": "企业", "production_line": "生产线", "facility": "设施", "point": "点位"}
ACTION_ZH = {"STOP": "停产", "LIMIT": "限产", "OFFPEAK": "错峰生产", "EXEMPT": "豁免"}


def list_workbook(
    sheets: dict[str, list[list[Any]]], headers: Sequence[str] = LIST_HEADERS
) -> bytes:
    """An .xlsx with the given sheets (title → rows under `headers`), built with openpyxl."""
    import io

    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        sheet.append(list(headers))
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def row_of(enterprise_id: str, m: dict[str, Any], ramp: int = 60) -> list[Any]:
    windows = "、".join(f"{w['start']}-{w['end']}" for w in m.get("windows", []))
    return [
        None,
        enterprise_id,
        KIND_ZH[m["target_kind"]],
        "、".join(m.get("target_ids", [])) or None,
        ACTION_ZH[m["action"]],
        m.get("reduction_pct"),
        m.get("allowed_load_pct"),
        windows or None,
        ramp,
        m.get("exempt_reason"),
        "重污染天气应急期间请按本措施执行。",
    ]


def city_workbook(city: City) -> bytes:
    """The city's list: orange and red sheets, 60 minutes to wind down."""
    return list_workbook(
        {
            "橙色预警": [row_of(e.id, m) for e in city.enterprises for m in e.orange],
            "红色预警": [row_of(e.id, m) for e in city.enterprises for m in e.red],
        }
    )


async def upload(
    h: Harness, data: bytes, role_headers: dict[str, str], **params: Any
) -> httpx.Response:
    return await h.client.post(
        "/measures/import",
        params=params,
        files={"file": ("list.xlsx", data, "application/octet-stream")},
        headers=role_headers,
    )


@pytest.fixture(scope="package")
async def listed(harness: Harness) -> int:
    """The city's list imported (once); its version."""
    r = await upload(harness, city_workbook(harness.city), headers(Role.CITY_SUPERVISOR))
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    assert version is not None
    return int(version)
