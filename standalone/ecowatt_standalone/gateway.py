"""Composition of every service in one process (standalone mode).

This package is the only place that imports every service: it is the composition root, not
a service. Each service is built by the kernel's `create_app` with the shared
`Infrastructure`; the auth service's gateway (`ecowatt_auth.gateway.Gateway`) serves them
all at `/api/<service>` in this process — authenticating, rate-limiting and auditing every
request — and runs their lifespans. Their `/healthz`, `/readyz` and `/metrics` are not on
the public port: the operations app serves them on `ECOWATT_OPERATIONS_PORT` (the HTTP port
+ 1 by default, on the loopback interface).

In development, once every service runs and ingest listens on its HJ 212 port, the device
simulator plays the registry's synthetic city against it (`DeviceFleet`): every registered
device connects, reports in real time and answers commands, and a small share misbehaves
(`ECOWATT_SIMULATOR_*` settings), so validation and alarm have something to find.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
from ecowatt_alarm.service import SERVICE as ALARM
from ecowatt_auth.gateway.app import Gateway
from ecowatt_auth.gateway.forward import LocalForwarder
from ecowatt_auth.runtime import RUNTIME, AuthRuntime
from ecowatt_auth.service import SERVICE as AUTH
from ecowatt_auth.settings import AuthSettings
from ecowatt_control_plan.service import SERVICE as CONTROL_PLAN
from ecowatt_ingest.api import SERVER
from ecowatt_ingest.service import SERVICE as INGEST
from ecowatt_kernel.app import Infrastructure, ServiceSpec, create_app
from ecowatt_kernel.bus import make_bus
from ecowatt_kernel.identity import verifier_from_settings
from ecowatt_kernel.metrics import CONTENT_TYPE_LATEST, render_metrics
from ecowatt_kernel.redis_client import create_redis
from ecowatt_kernel.settings import KernelSettings
from ecowatt_ops.service import SERVICE as OPS
from ecowatt_registry.service import SERVICE as REGISTRY
from ecowatt_registry.settings import RegistrySettings
from ecowatt_registry.synthetic.service import recorded_city
from ecowatt_reporting.service import SERVICE as REPORTING
from ecowatt_simulator import DeviceSettings, FaultConfig, Simulator, run_against_platform
from ecowatt_validation.service import SERVICE as VALIDATION
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ecowatt_standalone.embedded import EmbeddedPostgres, EmbeddedRedis

__all__ = [
    "SERVICES",
    "SIMULATED_FAULTS",
    "DeviceFleet",
    "Standalone",
    "StandaloneSettings",
    "build_gateway",
    "build_operations",
]

_logger = logging.getLogger("ecowatt.standalone")

# Start order: the archive first (others read it), the device edge last (it feeds the rest).
SERVICES: tuple[ServiceSpec, ...] = (
    AUTH,
    REGISTRY,
    VALIDATION,
    ALARM,
    CONTROL_PLAN,
    REPORTING,
    OPS,
    INGEST,
)


class StandaloneSettings(KernelSettings):
    """Standalone settings (`ECOWATT_*`); defaults suit a laptop."""

    service_name: str = "standalone"
    bus_backend: Literal["kafka", "memory", "disk"] = "disk"
    """disk: the durable in-process bus, its journal in `<data_dir>/bus` (the default)."""
    log_format: Literal["json", "text"] = "text"
    http_port: int = 8000
    operations_port: int | None = None
    """Health, readiness and metrics of every service (Prometheus, probes): the HTTP port + 1
    when unset. Bound to the loopback interface like the HTTP port by default."""
    data_dir: Path = Path(".data")
    # Ports of the embedded servers, away from the defaults of servers a developer may run.
    standalone_pg_port: int = 25432
    standalone_redis_port: int = 26379
    # The device simulator playing the synthetic city against ingest (see DeviceFleet).
    simulator_enabled: bool | None = None
    """None: on in the development environment (what `make run` uses)."""
    simulator_fault_share: float = 0.03
    """Share of devices given each fault of SIMULATED_FAULTS (0: a well-behaved city)."""
    simulator_speed: float = 1.0
    """Simulated seconds per wall second (1: real time, DataTime = now)."""
    simulator_showcase: bool = True
    """Give `control_off` to control facilities whose production runs at start-up and turn
    them off at once, so that the first R1 alarms open one confirmation period (30 min)
    after `make run` starts rather than whenever their drawn fault windows come round."""

    @property
    def ops_port(self) -> int:
        return self.operations_port if self.operations_port is not None else self.http_port + 1

    @property
    def runs_simulator(self) -> bool:
        if self.simulator_enabled is None:
            return self.environment == "development"
        return self.simulator_enabled


SIMULATED_FAULTS = (
    "control_off",
    "late_start",
    "early_stop",
    "low_load",
    "negative_energy",
    "meter_reset",
    "constant_power",
    "offline",
    "garbage",
    "lowercase_crc",
    "split_packets",
    "clock_drift",
)
"""Faults of the standalone fleet: what validation and alarm look for, plus protocol habits
ingest copes with. Not: wrong_password and modbus_crc (the device would be refused or
rejected for good), frames_2005 (no answers expected)."""


class DeviceFleet:
    """The simulator against this process's ingest: started once ingest accepts devices and
    the registry has recorded its synthetic city (its seed gives the device PWs), cancelled
    at shutdown (every simulated connection closed)."""

    def __init__(self, settings: StandaloneSettings, apps: dict[str, FastAPI]) -> None:
        self.settings = settings
        self.apps = apps
        self.simulator: Simulator | None = None
        self._task: asyncio.Task[None] | None = None

    def _context(self, name: str) -> Any:
        return getattr(self.apps[name].state, "context", None)

    async def city_seed(self, poll_s: float = 1.0) -> int:
        """The seed the registry recorded for its synthetic city (waits for the seeding)."""
        context = self._context(REGISTRY.name)
        said = False
        while True:
            async with context.database.session() as session:
                recorded = await recorded_city(session)
            if recorded is not None and "seed" in recorded:
                return int(recorded["seed"])
            if not said:
                settings = context.settings
                seeding = isinstance(settings, RegistrySettings) and settings.seeds_city
                _logger.info(
                    "simulator waiting for the registry's synthetic city%s",
                    ""
                    if seeding
                    else " (ECOWATT_REGISTRY_SEED_CITY is off: seed one with"
                    " POST /api/registry/admin/synthetic-city)",
                )
                said = True
            await asyncio.sleep(poll_s)

    async def _run(self) -> None:
        ingest_context = self._context(INGEST.name)
        server = SERVER.find(ingest_context) if ingest_context else None
        if server is None:
            _logger.info("simulator not started: ingest's HJ 212 server is off")
            return
        await server.serving.wait()
        port = server.port
        if port is None:  # (not once serving: `start` binds the port before it serves)
            _logger.warning("simulator not started: ingest's HJ 212 server has no port")
            return
        seed = await self.city_seed()
        share = self.settings.simulator_fault_share
        faults = FaultConfig(
            shares=dict.fromkeys(SIMULATED_FAULTS, share) if share else {},
            showcase_from=time.time() if self.settings.simulator_showcase else None,
        )

        def started(sim: Simulator) -> None:
            self.simulator = sim
            _logger.info(
                "simulating %d devices of the synthetic city (seed %d) against port %s,"
                " %d of them with faults",
                len(sim.fleet.devices),
                seed,
                port,
                len(sim.plan.assignments()),
            )

        await run_against_platform(
            self._context(INGEST.name).bus,
            "127.0.0.1",
            port,
            seed,
            topic=server.settings.topic_registry,
            speed=self.settings.simulator_speed,
            faults=faults,
            settings=DeviceSettings(report_on_connect=True),  # online at once, not in a minute
            group_prefix="standalone-simulator",
            on_started=started,
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._guarded(), name="standalone:simulator")

    async def _guarded(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception:
            _logger.exception("the device simulator stopped")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class Standalone:
    """The embedded servers and the gateway app of one standalone process."""

    def __init__(self, settings: StandaloneSettings) -> None:
        self.settings = settings
        data = settings.data_dir.resolve()
        self.postgres = EmbeddedPostgres(data / "postgres", port=settings.standalone_pg_port)
        self.redis = EmbeddedRedis(data / "redis", port=settings.standalone_redis_port)
        self.apps: dict[str, FastAPI] = {}
        self.infrastructure: Infrastructure | None = None

    def start_servers(self) -> None:
        self.postgres.up()
        self.redis.up()

    def stop_servers(self) -> None:
        self.redis.down()
        self.postgres.down()

    def service_settings(self, spec: ServiceSpec) -> KernelSettings:
        """The settings of one service inside this process."""
        values: dict[str, Any] = {
            "environment": self.settings.environment,
            "bus_backend": self.settings.bus_backend,
            "database_url": SecretStr(self.postgres.url),
            "redis_url": SecretStr(self.redis.url),
            "log_level": self.settings.log_level,
            "timezone": self.settings.timezone,
        }
        if spec is OPS:
            # ops asks the other services' /readyz on the operations port (the public gateway
            # does not serve it)
            base = f"http://127.0.0.1:{self.settings.ops_port}"
            values["ops_service_urls"] = ",".join(f"{s.name}={base}/{s.name}" for s in SERVICES)
        if (
            spec.settings_class is AuthSettings
            and self.settings.is_development
            and "ECOWATT_AUTH_COOKIE_SECURE" not in os.environ
        ):
            # `make run` serves plain HTTP on the loopback interface: a Secure cookie would
            # never be sent back. The cookie does not leave the machine.
            values["auth_cookie_secure"] = False
        return spec.settings_class(**values)

    def gateway(self) -> Gateway:
        """The app served on the gateway port, with every service behind it."""
        bus = make_bus(self.settings, disk_folder=self.settings.data_dir.resolve() / "bus")
        self.infrastructure = Infrastructure(
            bus=bus,
            redis=create_redis(self.redis.url),
            database_url=self.postgres.url,
            verifier=verifier_from_settings(self.settings),
        )
        self.apps = {
            spec.name: create_app(
                spec, settings=self.service_settings(spec), infrastructure=self.infrastructure
            )
            for spec in SERVICES
        }
        fleet = DeviceFleet(self.settings, self.apps) if self.settings.runs_simulator else None
        auth_settings = self.service_settings(AUTH)
        assert isinstance(auth_settings, AuthSettings)
        return build_gateway(
            self.infrastructure, self.apps, fleet=fleet, web_dir=web_dir(auth_settings)
        )

    def operations(self) -> ASGIApp:
        """The app served on the operations port (after `gateway()`)."""
        assert self.infrastructure is not None
        return build_operations(self.infrastructure, self.apps)


def web_dir(settings: AuthSettings) -> Path | None:
    """The SPA build the gateway serves: ECOWATT_GATEWAY_WEB_DIR, else `web/dist`."""
    if settings.gateway_web_dir:
        return Path(settings.gateway_web_dir)
    default = Path("web/dist")
    return default if (default / "index.html").is_file() else None


def auth_runtime(apps: dict[str, FastAPI]) -> AuthRuntime | None:
    """The auth service's runtime once it started (the gateway's authenticator and audit)."""
    context = getattr(apps[AUTH.name].state, "context", None)
    if context is None:
        return None
    return RUNTIME.find(context)


def build_gateway(
    infrastructure: Infrastructure,
    apps: dict[str, FastAPI],
    *,
    fleet: DeviceFleet | None = None,
    web_dir: Path | None = None,
) -> Gateway:
    """The gateway in front of `apps` (in this process), running their lifespans; `fleet`
    (simulated devices) starts after them and stops first."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(infrastructure.close)
            stack.push_async_callback(infrastructure.bus.stop)
            for service_app in apps.values():
                await stack.enter_async_context(service_app.router.lifespan_context(service_app))
            await infrastructure.bus.start()
            if fleet is not None:
                stack.push_async_callback(fleet.stop)
                await fleet.start()
            yield

    composition = FastAPI(title="EcoWatt", lifespan=lifespan, openapi_url=None, docs_url=None)

    def openapi_of(app: FastAPI) -> Any:
        async def source() -> dict[str, Any]:
            return app.openapi()

        return source

    return Gateway(
        forwarders={name: LocalForwarder(app) for name, app in apps.items()},
        runtime=lambda: auth_runtime(apps),
        lifespan_app=composition,
        openapi_sources={name: openapi_of(app) for name, app in apps.items()},
        web_dir=web_dir,
    )


def build_operations(infrastructure: Infrastructure, apps: dict[str, FastAPI]) -> ASGIApp:
    """Health, readiness and metrics of the process and of each service: `/healthz`,
    `/readyz` (every service ready), `/metrics`, `/<service>/healthz|readyz`."""
    operations = FastAPI(title="EcoWatt standalone operations", openapi_url=None, docs_url=None)

    @operations.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "service": "standalone", "services": sorted(apps)}

    @operations.get("/readyz")
    async def readyz() -> JSONResponse:
        checks: dict[str, bool] = {"bus": await infrastructure.bus.healthy()}
        for name, app in apps.items():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ops") as client:
                checks[name] = (await client.get("/readyz")).status_code == 200
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @operations.get("/metrics")
    async def metrics() -> Response:
        return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            parts = scope["path"].strip("/").split("/")
            if (
                len(parts) == 2
                and parts[0] in apps
                and parts[1] in ("healthz", "readyz", "metrics")
            ):
                child = {**scope, "root_path": scope.get("root_path", "") + "/" + parts[0]}
                await apps[parts[0]](child, receive, send)
                return
        await operations(scope, receive, send)

    return app
