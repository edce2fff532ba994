"""The service app factory: every EcoWatt service is `create_app(SERVICE)`.

A service describes itself with a `ServiceSpec` (name, routers, schema and migrations, a
start-up hook that subscribes its consumers and builds its state). `create_app` returns a
FastAPI app with `/healthz`, `/readyz`, `/metrics`, problem-details errors, trace ids,
request metrics and input bounds (`ecowatt_kernel.inputs`: unknown query parameters,
control characters and out-of-range integers refused; request bodies capped at
`http_max_body_bytes`), whose lifespan:

1. connects to the infrastructure — its own (distributed mode: Kafka bus, Redis, PostgreSQL
   from settings) or one shared by every service of the process (standalone mode);
2. applies the service's migrations;
3. runs the start-up hook (consumers are subscribed through `ServiceContext.subscribe`);
4. starts the bus it owns; on shutdown stops its consumers (committing what they handled)
   before closing connections.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from ecowatt_kernel.audit import AUDITED_HEADER, is_marked
from ecowatt_kernel.bus import BatchHandler, Bus, RebalanceHook, Subscription, make_bus
from ecowatt_kernel.db import Database
from ecowatt_kernel.identity import TokenVerifier, verifier_from_settings
from ecowatt_kernel.inputs import guard_request
from ecowatt_kernel.metrics import (
    CONTENT_TYPE_LATEST,
    HTTP_REQUEST_SECONDS,
    HTTP_REQUESTS,
    render_metrics,
)
from ecowatt_kernel.problems import TooLargeAsProblem, install_problem_handlers
from ecowatt_kernel.redis_client import Redis, create_redis, redis_healthy
from ecowatt_kernel.settings import KernelSettings, settings_or_exit
from ecowatt_kernel.times import use_timezone
from ecowatt_kernel.tracing import trace_context

__all__ = [
    "DbSession",
    "Infrastructure",
    "ServiceContext",
    "ServiceSpec",
    "StateKey",
    "create_app",
    "serve",
    "service_context",
]

_logger = logging.getLogger(__name__)
TRACE_HTTP_HEADER = "X-Trace-Id"


@dataclass
class Infrastructure:
    """Connections a process hands to the services it runs."""

    bus: Bus
    redis: Redis
    database_url: str
    verifier: TokenVerifier

    @classmethod
    def from_settings(cls, settings: KernelSettings) -> Infrastructure:
        return cls(
            bus=make_bus(settings),
            redis=create_redis(settings.redis_url.get_secret_value()),
            database_url=settings.database_url.get_secret_value(),
            verifier=verifier_from_settings(settings),
        )

    async def close(self) -> None:
        await self.redis.aclose()


@dataclass
class ServiceContext:
    """What a running service works with; `app.state.context` in request handlers."""

    name: str
    settings: KernelSettings
    infrastructure: Infrastructure
    db: Database | None
    subscriptions: list[Subscription] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def bus(self) -> Bus:
        return self.infrastructure.bus

    @property
    def redis(self) -> Redis:
        return self.infrastructure.redis

    @property
    def database(self) -> Database:
        if self.db is None:
            raise RuntimeError(f"service {self.name} has no database schema")
        return self.db

    async def subscribe(
        self,
        *,
        name: str,
        topics: Sequence[str],
        handler: BatchHandler,
        max_batch: int = 500,
        concurrent_partitions: bool = False,
        on_assigned: RebalanceHook | None = None,
        on_revoked: RebalanceHook | None = None,
    ) -> Subscription:
        """Consume `topics` in the consumer group `<service>.<name>` (see `Bus.subscribe`)."""
        subscription = await self.bus.subscribe(
            group=f"{self.name}.{name}",
            topics=topics,
            handler=handler,
            max_batch=max_batch,
            concurrent_partitions=concurrent_partitions,
            on_assigned=on_assigned,
            on_revoked=on_revoked,
        )
        self.subscriptions.append(subscription)
        return subscription


T = TypeVar("T")


class StateKey(Generic[T]):
    """One typed entry of `ServiceContext.state`: a service's start-up hook stores its runtime
    object under it, and request handlers read it back through one `Annotated` dependency
    (`Annotated[Runtime, Depends(KEY.from_request)]`) — no string look-up or cast elsewhere.

    The value is checked against `kind` when read, so a wrong object fails at the look-up."""

    def __init__(self, name: str, kind: type[T]) -> None:
        self.name = name
        self.kind = kind

    def set(self, ctx: ServiceContext, value: T) -> None:
        ctx.state[self.name] = value

    def find(self, ctx: ServiceContext) -> T | None:
        """The stored value, or None before start-up stored it."""
        value = ctx.state.get(self.name)
        if value is None:
            return None
        if not isinstance(value, self.kind):
            raise TypeError(
                f"service {ctx.name}: state {self.name!r} holds a {type(value).__name__}, "
                f"not a {self.kind.__name__}"
            )
        return value

    def pop(self, ctx: ServiceContext) -> T | None:
        """Remove and return the stored value (shutdown), or None."""
        value = self.find(ctx)
        ctx.state.pop(self.name, None)
        return value

    def get(self, ctx: ServiceContext) -> T:
        """The stored value; RuntimeError before start-up stored it."""
        value = self.find(ctx)
        if value is None:
            raise RuntimeError(f"service {ctx.name} has no {self.name!r} yet (not started)")
        return value

    def from_request(self, request: Request) -> T:
        """Dependency: the value of the service handling the request."""
        return self.get(service_context(request))


Hook = Callable[[ServiceContext], Awaitable[None]]


@dataclass(frozen=True)
class ServiceSpec:
    """Everything the factory needs to know about one service."""

    name: str
    title: str
    description: str
    settings_class: type[KernelSettings] = KernelSettings
    routers: Sequence[APIRouter] = ()
    schema: str | None = None
    migrations: Path | None = None
    on_startup: Hook | None = None
    on_shutdown: Hook | None = None
    version: str = "0.1.0"


class _TraceAndMetrics(BaseHTTPMiddleware):
    def __init__(self, app: Any, service: str) -> None:
        super().__init__(app)
        self.service = service

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        incoming = request.headers.get(TRACE_HTTP_HEADER)
        with trace_context(incoming if incoming and len(incoming) <= 64 else None) as trace_id:
            started = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            template = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(
                self.service, request.method, template, str(response.status_code)
            ).inc()
            HTTP_REQUEST_SECONDS.labels(self.service, request.method, template).observe(
                time.perf_counter() - started
            )
            response.headers[TRACE_HTTP_HEADER] = trace_id
            if is_marked(request):
                response.headers[AUDITED_HEADER] = "1"
            return response


class ServiceApp(FastAPI):
    """The FastAPI app of a service: every error, even the body-size limit's, is a problem."""

    def build_middleware_stack(self) -> Any:
        return TooLargeAsProblem(super().build_middleware_stack())


def create_app(
    spec: ServiceSpec,
    *,
    settings: KernelSettings | None = None,
    infrastructure: Infrastructure | None = None,
) -> FastAPI:
    """Build the FastAPI app of `spec`; pass `infrastructure` to share connections."""
    config = settings or spec.settings_class()
    use_timezone(config.timezone)
    owns_infrastructure = infrastructure is None
    readiness: dict[str, bool] = {"started": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        infra = infrastructure or Infrastructure.from_settings(config)
        app.state.token_verifier = infra.verifier
        db = None
        if spec.schema:
            db = Database(
                infra.database_url,
                schema=spec.schema,
                pool_size=config.database_pool_size,
                application_name=f"ecowatt-{spec.name}",
            )
        context = ServiceContext(name=spec.name, settings=config, infrastructure=infra, db=db)
        app.state.context = context
        try:
            if db is not None and spec.migrations is not None:
                await db.migrate(spec.migrations)
            if spec.on_startup is not None:
                await spec.on_startup(context)
            if owns_infrastructure:
                await infra.bus.start()
            readiness["started"] = True
            _logger.info("service %s started", spec.name)
            yield
        finally:
            readiness["started"] = False
            for subscription in reversed(context.subscriptions):
                if subscription.running:
                    await subscription.stop()
            if spec.on_shutdown is not None:
                await spec.on_shutdown(context)
            if owns_infrastructure:
                await infra.bus.stop()
                await infra.close()
            if db is not None:
                await db.dispose()
            _logger.info("service %s stopped", spec.name)

    app = ServiceApp(
        title=spec.title,
        description=spec.description,
        version=spec.version,
        lifespan=lifespan,
        dependencies=[Depends(guard_request)],
        max_body_size=config.http_max_body_bytes,
    )
    app.state.token_verifier = infrastructure.verifier if infrastructure else None
    install_problem_handlers(app)
    app.add_middleware(_TraceAndMetrics, service=spec.name)

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": spec.name}

    @app.get("/readyz", tags=["operations"], summary="Readiness of every dependency")
    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, bool] = {"started": readiness["started"]}
        context: ServiceContext | None = getattr(request.app.state, "context", None)
        if context is not None and readiness["started"]:
            checks["bus"] = await context.bus.healthy()
            checks["redis"] = await redis_healthy(context.redis)
            if context.db is not None:
                checks["database"] = await context.db.ping()
            checks["consumers"] = all(s.running for s in context.subscriptions)
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "service": spec.name, "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)

    for router in spec.routers:
        app.include_router(router)
    return app


def service_context(request: Request) -> ServiceContext:
    """Dependency: the context of the service handling the request."""
    return request.app.state.context  # type: ignore[no-any-return]


async def _db_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with service_context(request).database.session() as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(_db_session)]


def serve(spec: ServiceSpec) -> None:
    """Run one service on its own (distributed mode): `python -m ecowatt_<service>`."""
    import uvicorn

    from ecowatt_kernel.logging import configure_logging

    settings = settings_or_exit(spec.settings_class)
    configure_logging(service=spec.name, level=settings.log_level, fmt=settings.log_format)
    uvicorn.run(
        create_app(spec, settings=settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
    )
