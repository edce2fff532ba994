"""Composition of every service in one process (standalone mode).

This package is the only place that imports every service: it is the composition root, not
a service. Each service is built by the kernel's `create_app` with the shared
`Infrastructure`, mounted at `/api/<service>`, and its lifespan is run by the gateway's
(Starlette does not run lifespans of mounted apps).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Literal

from ecowatt_alarm.service import SERVICE as ALARM
from ecowatt_auth.service import SERVICE as AUTH
from ecowatt_control_plan.service import SERVICE as CONTROL_PLAN
from ecowatt_ingest.service import SERVICE as INGEST
from ecowatt_kernel.app import Infrastructure, ServiceSpec, create_app
from ecowatt_kernel.bus import InProcessBus
from ecowatt_kernel.identity import verifier_from_settings
from ecowatt_kernel.metrics import CONTENT_TYPE_LATEST, render_metrics
from ecowatt_kernel.redis_client import create_redis
from ecowatt_kernel.settings import KernelSettings
from ecowatt_registry.service import SERVICE as REGISTRY
from ecowatt_reporting.service import SERVICE as REPORTING
from ecowatt_validation.service import SERVICE as VALIDATION
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.responses import Response

from ecowatt_standalone.embedded import EmbeddedPostgres, EmbeddedRedis

__all__ = ["SERVICES", "Standalone", "StandaloneSettings"]

# Start order: the archive first (others read it), the device edge last (it feeds the rest).
SERVICES: tuple[ServiceSpec, ...] = (
    AUTH,
    REGISTRY,
    VALIDATION,
    ALARM,
    CONTROL_PLAN,
    REPORTING,
    INGEST,
)


class StandaloneSettings(KernelSettings):
    """Standalone settings (`ECOWATT_*`); defaults suit a laptop."""

    service_name: str = "standalone"
    bus_backend: Literal["kafka", "memory"] = "memory"
    log_format: Literal["json", "text"] = "text"
    http_port: int = 8000
    data_dir: Path = Path(".data")
    # Ports of the embedded servers, away from the defaults of servers a developer may run.
    standalone_pg_port: int = 25432
    standalone_redis_port: int = 26379


class Standalone:
    """The embedded servers and the gateway app of one standalone process."""

    def __init__(self, settings: StandaloneSettings) -> None:
        self.settings = settings
        data = settings.data_dir.resolve()
        self.postgres = EmbeddedPostgres(data / "postgres", port=settings.standalone_pg_port)
        self.redis = EmbeddedRedis(data / "redis", port=settings.standalone_redis_port)

    def start_servers(self) -> None:
        self.postgres.up()
        self.redis.up()

    def stop_servers(self) -> None:
        self.redis.down()
        self.postgres.down()

    def service_settings(self, spec: ServiceSpec) -> KernelSettings:
        """The settings of one service inside this process."""
        return spec.settings_class(
            environment=self.settings.environment,
            bus_backend="memory",
            database_url=SecretStr(self.postgres.url),
            redis_url=SecretStr(self.redis.url),
            log_level=self.settings.log_level,
            timezone=self.settings.timezone,
        )

    def gateway(self) -> FastAPI:
        """The app served on the gateway port, with every service mounted."""
        bus = InProcessBus(max_attempts=self.settings.bus_max_attempts)
        infrastructure = Infrastructure(
            bus=bus,
            redis=create_redis(self.redis.url),
            database_url=self.postgres.url,
            verifier=verifier_from_settings(self.settings),
        )
        apps = {
            spec.name: create_app(
                spec, settings=self.service_settings(spec), infrastructure=infrastructure
            )
            for spec in SERVICES
        }
        return build_gateway(infrastructure, apps)


def build_gateway(infrastructure: Infrastructure, apps: dict[str, FastAPI]) -> FastAPI:
    """A gateway app mounting `apps` at /api/<name> and running their lifespans."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(infrastructure.close)
            stack.push_async_callback(infrastructure.bus.stop)
            for service_app in apps.values():
                await stack.enter_async_context(service_app.router.lifespan_context(service_app))
            await infrastructure.bus.start()
            yield

    gateway = FastAPI(title="EcoWatt", description="EcoWatt standalone gateway", lifespan=lifespan)

    @gateway.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "service": "gateway", "services": sorted(apps)}

    @gateway.get("/readyz", tags=["operations"])
    async def readyz(request: Request) -> JSONResponse:
        checks = {"bus": await infrastructure.bus.healthy()}
        return JSONResponse(
            {"status": "ready" if all(checks.values()) else "not ready", "checks": checks},
            status_code=200 if all(checks.values()) else 503,
        )

    @gateway.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)

    for name, service_app in apps.items():
        gateway.mount(f"/api/{name}", service_app)
    return gateway
