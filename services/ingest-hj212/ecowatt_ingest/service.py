"""The ingest-hj212 service definition: what `create_app` builds and standalone mode mounts.

`on_startup` builds the registry view (from `registry.changes`), binds the HJ 212 TCP port
and subscribes the command consumer; the server starts accepting devices once the registry
view has caught up. `on_shutdown` stops accepting, answers what is durable and retires this
instance's sessions in Redis. So `make run` (standalone) and `python -m ecowatt_ingest`
(distributed) both serve port 9212. With `ECOWATT_INGEST_WORKERS` > 1 (Kafka bus only) this
process is worker 0 and starts the others as TCP-only processes on the same port
(`workers.WorkerPool`); the API reads their sessions from Redis like any instance's.
"""

from __future__ import annotations

from pathlib import Path

from ecowatt_kernel.app import ServiceContext, ServiceSpec, StateKey
from ecowatt_kernel.registry_view import RegistryView

from ecowatt_ingest.api import SERVER, router
from ecowatt_ingest.archive.views import (
    REGISTRY_VIEW,
    archived_parts,
    start_archive,
    stop_archive,
)
from ecowatt_ingest.archive.views import router as archive_router
from ecowatt_ingest.server import IngestServer
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.workers import WorkerPool, ingest_pool

__all__ = ["SERVICE", "on_shutdown", "on_startup"]

WORKERS = StateKey("ingest_workers", WorkerPool)


async def on_startup(context: ServiceContext) -> None:
    settings = context.settings
    assert isinstance(settings, IngestSettings)
    if not settings.hj212_enabled:
        await start_archive(context)  # (with a registry view of its own)
        return
    view = RegistryView(topic=settings.topic_registry)
    await view.attach(context.bus, group_prefix=settings.service_name)
    context.subscriptions.append(view.subscription)  # type: ignore[arg-type]
    server = IngestServer(settings, bus=context.bus, redis=context.redis, registry=view)
    await server.start()
    SERVER.set(context, server)
    if settings.workers > 1 and settings.ingest_worker_index is None:
        assert server.port is not None
        pool = ingest_pool(range(1, settings.workers), port=server.port)
        await pool.start()
        WORKERS.set(context, pool)
    REGISTRY_VIEW.set(context, view)
    await start_archive(context)
    server.dispatcher.archived_parts = archived_parts(context)
    if settings.commands_enabled:
        await context.subscribe(
            name=f"commands.{server.instance}",
            topics=[settings.topic_commands],
            handler=server.commands.handle,
        )


async def on_shutdown(context: ServiceContext) -> None:
    await stop_archive(context)
    pool = WORKERS.pop(context)
    if pool is not None:
        await pool.stop()
    server = SERVER.pop(context)
    if server is not None:
        await server.stop()


SERVICE = ServiceSpec(
    name="ingest-hj212",
    title="EcoWatt HJ 212 ingest",
    description=(
        "Owns TCP sessions with devices (port 9212), device online state in Redis, "
        "answers to devices after their frames are durable, reverse commands."
    ),
    settings_class=IngestSettings,
    schema="ingest",
    migrations=Path(__file__).parent / "migrations",
    on_startup=on_startup,
    on_shutdown=on_shutdown,
    routers=[router, archive_router],
)
