"""Every service running in this process for the OpenAPI fuzzer, on the real PostgreSQL and
Redis of the test infrastructure and one in-process bus, as standalone mode composes them.

The services run on their own event loop in a background thread behind a real HTTP server
(uvicorn on a free loopback port), so that schemathesis sends real requests — multipart
uploads, percent-encoded NUL bytes, 20-digit integers — and the tests stay synchronous (as
Hypothesis wants). The registry seeds a small synthetic city first, so lists, exports and
reads have rows to serialise.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import uvicorn
from ecowatt_kernel.app import Infrastructure, ServiceSpec, create_app
from ecowatt_kernel.bus import InProcessBus
from ecowatt_kernel.db import scratch_database
from ecowatt_kernel.identity import (
    DataScope,
    Identity,
    Role,
    signer_from_settings,
    verifier_from_settings,
)
from ecowatt_kernel.redis_client import create_redis
from ecowatt_kernel.settings import KernelSettings
from ecowatt_standalone.gateway import SERVICES
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import Mount

ResultT = TypeVar("ResultT")

SCOPED_DISTRICT = "610112"
"""The district of the scoped identity (未央区, Xi'an), one the synthetic city fills."""

CITY_ENTERPRISES = 8


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Platform:
    """Every service behind one HTTP server, on an event loop of its own."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.port = _free_port()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._stopped: asyncio.Event | None = None
        self._done: asyncio.Future[None] | None = None
        settings = KernelSettings(environment="test")
        signer = signer_from_settings(settings)
        self.admin_token = signer.sign(
            Identity(
                subject="fuzz-admin", roles=frozenset({Role.ADMIN}), scope=DataScope(all=True)
            ),
            ttl=timedelta(hours=2),
        )
        self.scoped_token = signer.sign(
            Identity(
                subject="fuzz-district",
                roles=frozenset({Role.DISTRICT_OFFICER}),
                scope=DataScope(districts=frozenset({SCOPED_DISTRICT})),
            ),
            ttl=timedelta(hours=2),
        )

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port}/api/{service}"

    def run(self, coroutine: Coroutine[Any, Any, ResultT], timeout: float = 120) -> ResultT:
        """Run `coroutine` on the platform's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def settings_of(self, spec: ServiceSpec, database_url: str) -> KernelSettings:
        extra: dict[str, Any] = {}
        if spec.name == "registry":
            extra = {"registry_seed_city": True, "registry_seed_enterprises": CITY_ENTERPRISES}
        if spec.name == "ingest-hj212":
            extra = {"hj212_host": "127.0.0.1", "hj212_port": 0}
        return spec.settings_class(
            environment="test",
            bus_backend="memory",
            database_url=SecretStr(database_url),
            redis_url=SecretStr(self.redis_url),
            **extra,
        )

    @asynccontextmanager
    async def _services(self) -> AsyncIterator[Starlette]:
        async with AsyncExitStack() as stack:
            database_url = await stack.enter_async_context(scratch_database(self.database_url))
            infrastructure = Infrastructure(
                bus=InProcessBus(),
                redis=create_redis(self.redis_url),
                database_url=database_url,
                verifier=verifier_from_settings(KernelSettings(environment="test")),
            )
            stack.push_async_callback(infrastructure.close)
            stack.push_async_callback(infrastructure.bus.stop)
            apps = {
                spec.name: create_app(
                    spec,
                    settings=self.settings_of(spec, database_url),
                    infrastructure=infrastructure,
                )
                for spec in SERVICES
            }
            for app in apps.values():
                await stack.enter_async_context(app.router.lifespan_context(app))
            await infrastructure.bus.start()
            yield Starlette(routes=[Mount(f"/api/{name}", app) for name, app in apps.items()])

    async def _serve(self, started: asyncio.Future[None]) -> None:
        self._stopped = asyncio.Event()
        try:
            async with self._services() as root:
                server = uvicorn.Server(
                    uvicorn.Config(
                        root,
                        host="127.0.0.1",
                        port=self.port,
                        lifespan="off",
                        log_config=None,
                        access_log=False,
                    )
                )
                serving = asyncio.create_task(server.serve())
                while not server.started:
                    if serving.done():
                        await serving
                    await asyncio.sleep(0.05)
                started.set_result(None)
                await self._stopped.wait()
                server.should_exit = True
                await serving
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    def start(self) -> None:
        self._thread.start()
        started: asyncio.Future[None] = self.loop.create_future()

        async def launch() -> None:
            self._done = asyncio.ensure_future(self._serve(started))
            await started

        self.run(launch(), timeout=180)
        self._wait_for_city()

    def _wait_for_city(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        while time.monotonic() < deadline:
            page = httpx.get(f"{self.url('registry')}/enterprises", headers=headers).json()
            if page.get("total") == CITY_ENTERPRISES:
                return
            time.sleep(0.5)
        raise AssertionError("the registry did not seed its synthetic city in time")

    def stop(self) -> None:
        async def shut() -> None:
            assert self._stopped is not None and self._done is not None
            self._stopped.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._done

        try:
            self.run(shut(), timeout=120)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)
