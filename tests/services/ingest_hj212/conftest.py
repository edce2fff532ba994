"""Fixtures for the HJ 212 server tests: a server on a free port, talking to the real Kafka
and Redis through private topic names and a private Redis prefix, and device clients built
with the codec (no simulator)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import ecowatt_hj212 as hj212
import httpx
import pytest
from asgi_lifespan import LifespanManager
from bearer import FreshBearer
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_ingest.api import router
from ecowatt_ingest.server import IngestServer
from ecowatt_ingest.settings import IngestSettings
from ecowatt_kernel.app import Infrastructure, ServiceContext, ServiceSpec, create_app
from ecowatt_kernel.bus import Bus, KafkaBus, KafkaConnection, Record
from ecowatt_kernel.contracts import (
    DeviceCommand,
    DeviceCommandResult,
    DeviceSnapshot,
    RegistryChange,
    TopicSpec,
    decode,
)
from ecowatt_kernel.identity import (
    DataScope,
    Identity,
    Role,
    signer_from_settings,
    verifier_from_settings,
)
from ecowatt_kernel.passwords import hash_password
from ecowatt_kernel.redis_client import Redis, create_redis
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.settings import KernelSettings

from .private_kafka import private_kafka  # noqa: F401 - a fixture for the outage tests

NOW = datetime(2026, 11, 26, tzinfo=UTC)
PW = "123456"
_HASHES: dict[str, str] = {}


def device_snapshot(mn: str, *, pw: str | None = PW, **extra: Any) -> DeviceSnapshot:
    hashed = None
    if pw is not None:
        hashed = _HASHES.get(pw) or _HASHES.setdefault(pw, hash_password(pw))
    return DeviceSnapshot(
        id=mn, mn=mn, updated_at=NOW, password_hash=hashed, enterprise_id="E1", **extra
    )


def registry_with(*devices: DeviceSnapshot) -> RegistryView:
    view = RegistryView(topic="unused")
    for revision, device in enumerate(devices, start=1):
        view.apply(
            RegistryChange(
                entity="device",
                entity_id=device.id,
                operation="upsert",
                revision=revision,
                changed_at=NOW,
                snapshot=device.model_dump(mode="json"),
            )
        )
    return view


SHANGHAI = ZoneInfo("Asia/Shanghai")


def local_now() -> datetime:
    """The deployment's local time (the tests run with the default Asia/Shanghai)."""
    return datetime.now(SHANGHAI).replace(tzinfo=None)


def qn_now() -> str:
    """A QN from a device whose clock is right."""
    return hj212_commands.new_qn(local_now())


def new_mn() -> str:
    return "EW" + uuid.uuid4().hex[:22].upper()


def command(mn: str, cn: str, params: dict[str, str] | None = None, **extra: Any) -> DeviceCommand:
    """A `DeviceCommand` as the API would publish it, requested now."""
    return DeviceCommand(
        command_id=f"cmd-{new_mn()}",
        mn=mn,
        cn=cn,
        params=params or {},
        requested_by="tester",
        requested_at=datetime.now(UTC),
        **extra,
    )


def upload(
    mn: str,
    *,
    cn: str = "2011",
    qn: str | None = None,
    pw: str = PW,
    flag: int = 5,
    data_time: str = "20261126084500",
    values: Sequence[tuple[str, str]] = (("xe0101-Rtd", "41.27"), ("xe0101-Flag", "N")),
    extra: Sequence[tuple[str, str]] = (),
    st: str = "31",
) -> hj212.Message:
    return hj212.Message(
        cn=cn,
        qn=qn or qn_now(),
        st=st,
        pw=pw,
        mn=mn,
        flag=flag,
        cp=(("DataTime", data_time), *values, *extra),
    )


class DeviceClient:
    """A device played by the test: writes frames, reads the platform's frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = hj212.StreamFramer()
        self.inbox: list[hj212.Frame] = []

    @classmethod
    async def connect(cls, port: int) -> DeviceClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes | hj212.Message) -> None:
        if isinstance(data, hj212.Message):
            data = hj212.encode(data)
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self, limit_s: float = 10.0) -> hj212.Frame:
        """The next frame from the platform (raises TimeoutError)."""
        deadline = asyncio.get_running_loop().time() + limit_s
        while not self.inbox:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError("no frame from the platform")
            chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
            if not chunk:
                raise ConnectionError("platform closed the connection")
            for event in self.framer.feed(chunk):
                if isinstance(event, hj212.RawFrame):
                    self.inbox.append(hj212.decode(event.data))
        return self.inbox.pop(0)

    async def expect(self, cn: str, limit_s: float = 10.0) -> hj212.Frame:
        frame = await self.receive(limit_s)
        assert frame.cn == cn, f"expected CN {cn}, got {frame.cn}: {frame.raw!r}"
        return frame

    async def nothing(self, seconds: float) -> None:
        """Assert that the platform sends nothing for `seconds`."""
        try:
            frame = await self.receive(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame from the platform: {frame.raw!r}")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def statuses(events: list[Any], command_id: str) -> list[str]:
    """The statuses reported for one command, in order."""
    return [
        e.status
        for e in events
        if isinstance(e, DeviceCommandResult) and e.command_id == command_id
    ]


@dataclass
class Topics:
    frames: str
    readings: str
    commands: str
    results: str
    audit: str

    def settings(self) -> dict[str, str]:
        return {
            "topic_frames": self.frames,
            "topic_readings": self.readings,
            "topic_commands": self.commands,
            "topic_command_results": self.results,
            "topic_audit": self.audit,
        }


async def make_topics(bus: Bus) -> Topics:
    tag = uuid.uuid4().hex[:10]
    topics = Topics(
        frames=f"test.ingest.{tag}.frames",
        readings=f"test.ingest.{tag}.readings",
        commands=f"test.ingest.{tag}.commands",
        results=f"test.ingest.{tag}.results",
        audit=f"test.ingest.{tag}.audit",
    )
    await bus.ensure_topics(
        [
            TopicSpec(topics.frames, "MN", "", partitions=3),
            TopicSpec(topics.readings, "MN", "", partitions=3),
            TopicSpec(topics.commands, "MN", "", partitions=2),
            TopicSpec(topics.results, "MN", "", partitions=2),
            TopicSpec(topics.audit, "actor", "", partitions=1),
        ]
    )
    return topics


@dataclass
class TopicReader:
    """Reads a topic from its start in a fresh consumer group."""

    bus: Bus
    topic: str
    records: list[Record] = field(default_factory=list)

    async def start(self) -> TopicReader:
        async def collect(records: Sequence[Record]) -> None:
            self.records.extend(records)

        self.subscription = await self.bus.subscribe(
            group=f"test-reader-{uuid.uuid4().hex[:8]}", topics=[self.topic], handler=collect
        )
        return self

    def events(self) -> list[Any]:
        return [decode(r).data for r in self.records]

    async def wait_for(
        self, condition: Callable[[list[Any]], bool], what: str, limit_s: float = 30.0
    ) -> list[Any]:
        deadline = asyncio.get_running_loop().time() + limit_s
        while True:
            events = self.events()
            if condition(events):
                return events
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; have {len(events)} events")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await self.subscription.stop()


@pytest.fixture(scope="module")
async def kafka(kafka_bootstrap: str) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(
        KafkaConnection(bootstrap_servers=kafka_bootstrap, client_id="ingest-test"), linger_ms=2
    )
    await bus.start()
    yield bus
    await bus.stop()


@pytest.fixture(scope="module")
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


ServerFactory = Callable[..., Awaitable[IngestServer]]


@pytest.fixture
async def topics(kafka: KafkaBus) -> Topics:
    return await make_topics(kafka)


@pytest.fixture
async def start_server(
    kafka: KafkaBus, redis: Redis, topics: Topics
) -> AsyncIterator[ServerFactory]:
    servers: list[IngestServer] = []

    async def factory(
        registry: RegistryView,
        *,
        bus: Bus | None = None,
        consume_commands: bool = False,
        clock: Callable[[], float] | None = None,
        **overrides: Any,
    ) -> IngestServer:
        options: dict[str, Any] = {
            "environment": "test",
            "hj212_host": "127.0.0.1",
            "hj212_port": 0,
            "redis_prefix": f"test-ingest-{uuid.uuid4().hex[:8]}",
            "instance_id": f"test-{uuid.uuid4().hex[:6]}",
            "raise_nofile": False,
            **topics.settings(),
        }
        options.update(overrides)
        server = IngestServer(
            IngestSettings(**options),
            bus=bus or kafka,
            redis=redis,
            registry=registry,
            **({"clock": clock} if clock is not None else {}),
        )
        await server.start(wait_for_registry=False)
        await asyncio.wait_for(server.serving.wait(), 10)
        servers.append(server)
        if consume_commands:
            subscriptions.append(
                await (bus or kafka).subscribe(
                    group=f"test-commands-{server.instance}",
                    topics=[topics.commands],
                    handler=server.commands.handle,
                )
            )
        return server

    subscriptions: list[Any] = []
    yield factory
    for subscription in subscriptions:
        await subscription.stop()
    for server in servers:
        await server.stop()


API_SETTINGS = KernelSettings(environment="test")
_SIGNER = signer_from_settings(API_SETTINGS)


def token(*roles: Role, scope: DataScope, subject: str = "u-1") -> FreshBearer:
    """Headers with a development-signed identity token (signed at each use)."""
    return FreshBearer(_SIGNER, Identity(subject=subject, roles=frozenset(roles), scope=scope))


ApiFactory = Callable[[IngestServer], Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def api(kafka: KafkaBus, redis: Redis) -> AsyncIterator[ApiFactory]:
    """`await api(server)`: an HTTP client of the ingest API serving that server."""
    async with contextlib.AsyncExitStack() as stack:

        async def factory(server: IngestServer) -> httpx.AsyncClient:
            async def on_startup(context: ServiceContext) -> None:
                context.state["ingest"] = server

            spec = ServiceSpec(
                name="ingest-api-test",
                title="t",
                description="",
                routers=[router],
                on_startup=on_startup,
            )
            infrastructure = Infrastructure(
                bus=kafka,
                redis=redis,
                database_url="unused",
                verifier=verifier_from_settings(API_SETTINGS),
            )
            app = create_app(spec, settings=API_SETTINGS, infrastructure=infrastructure)
            manager = await stack.enter_async_context(LifespanManager(app))
            transport = httpx.ASGITransport(app=manager.app)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://ingest")
            )

        yield factory
