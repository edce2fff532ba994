"""Run only the HJ 212 TCP server (no HTTP API, no PostgreSQL): `python -m ecowatt_ingest.tcp`.

For benchmarks and end-to-end tests that start the server in a process of its own. It uses
the same settings (`ECOWATT_*`), the bus from `ECOWATT_BUS_BACKEND` (Kafka by default),
Redis, the registry view of `ECOWATT_TOPIC_REGISTRY`, and the command consumer. It prints
`ready <port>` on stdout once it accepts devices, and stops cleanly on SIGTERM or SIGINT.

With `ECOWATT_INGEST_WORKERS` > 1 (and the Kafka bus) this process is the supervisor: it
starts that many workers on the port (`workers.WorkerPool`, SO_REUSEPORT), prints `ready
<port>` once all of them accept devices, and stops them on SIGTERM or SIGINT; a worker
also stops when its supervisor is gone, even after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from ecowatt_kernel.bus import make_bus
from ecowatt_kernel.logging import configure_logging
from ecowatt_kernel.redis_client import create_redis
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.workers import serve_worker_metrics, watch_parent

from ecowatt_ingest.server import IngestServer
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.workers import ingest_pool, reserve_port

__all__ = ["main", "run"]


async def run(settings: IngestSettings, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (or a signal arrives)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if settings.workers > 1 and settings.ingest_worker_index is None:
        await supervise(settings, stop)
        return
    watch = watch_parent(stop)  # a worker stops with its supervisor, even a SIGKILLed one
    serve_worker_metrics(settings)
    bus = make_bus(settings)
    redis = create_redis(settings.redis_url.get_secret_value())
    view = RegistryView(topic=settings.topic_registry)
    await view.attach(bus, group_prefix=settings.service_name)
    server = IngestServer(settings, bus=bus, redis=redis, registry=view)
    await server.start()
    if settings.commands_enabled:
        await bus.subscribe(
            group=f"{settings.service_name}.commands.{server.instance}",
            topics=[settings.topic_commands],
            handler=server.commands.handle,
        )
    await bus.start()
    try:
        await server.serving.wait()
        print(f"ready {server.port}", flush=True)
        await stop.wait()
    finally:
        if watch is not None:
            watch.cancel()
        await server.stop()
        await bus.stop()
        await redis.aclose()


async def supervise(settings: IngestSettings, stop: asyncio.Event) -> None:
    """Run `settings.workers` worker processes on one port until `stop` is set."""
    held = reserve_port(settings.hj212_host, settings.hj212_port)
    port = held.getsockname()[1]
    pool = ingest_pool(range(settings.workers), port=port)
    try:
        await pool.start()
        held.close()
        print(f"ready {port}", flush=True)
        await stop.wait()
    finally:
        held.close()
        await pool.stop()


def main() -> None:
    settings = IngestSettings()
    configure_logging(
        service=settings.service_name, level=settings.log_level, fmt=settings.log_format
    )
    if settings.use_uvloop:
        try:
            import uvloop

            uvloop.run(run(settings))
            return
        except ImportError:
            print("uvloop not installed: using asyncio's loop", file=sys.stderr)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
