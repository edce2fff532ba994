"""`make run`: the whole platform in one process.

Starts embedded PostgreSQL and Redis (data in `.data/`, kept between runs), builds every
service on one in-process bus behind the gateway on port 8000 (`/api/<service>/…`, a login
page at `/`), serves health, readiness and metrics on the operations port (8001), and runs
until Ctrl-C or SIGTERM (what systemd and orchestrators send); then stops the consumers
(committing what they handled), the bus, and the embedded servers — the same way for both
signals, and also when a signal arrives while the servers are still starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvicorn
from ecowatt_auth.gateway.serving import QuietServer, serve_together
from ecowatt_kernel.logging import configure_logging
from ecowatt_kernel.settings import settings_or_exit

from ecowatt_standalone.gateway import Standalone, StandaloneSettings

_logger = logging.getLogger("ecowatt.standalone")


async def serve(platform: Standalone) -> None:
    """Serve the gateway until SIGINT or SIGTERM (uvicorn runs the lifespan shutdown), and
    the operations port beside it."""
    settings = platform.settings
    server = uvicorn.Server(
        uvicorn.Config(
            platform.gateway(),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    )
    operations = QuietServer(
        uvicorn.Config(
            platform.operations(),
            host=settings.http_host,
            port=settings.ops_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )
    _logger.info(
        "EcoWatt standalone on http://%s:%d — log in there (operations: http://%s:%d/readyz;"
        " data in %s)",
        settings.http_host,
        settings.http_port,
        settings.http_host,
        settings.ops_port,
        settings.data_dir.resolve(),
    )
    await serve_together(server, operations)


def main() -> None:
    settings = settings_or_exit(StandaloneSettings)
    configure_logging(service="standalone", level=settings.log_level, fmt=settings.log_format)
    # SIGTERM as Ctrl-C: uvicorn shuts the services down on either, then re-raises the signal
    # with the handler it found; Python's default for SIGTERM would end the process there,
    # before the embedded servers below are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    platform = Standalone(settings)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            platform.start_servers()
            asyncio.run(serve(platform))
    finally:
        _logger.info("stopping embedded PostgreSQL and Redis")
        with contextlib.suppress(KeyboardInterrupt):  # a second signal does not skip this
            platform.stop_servers()


if __name__ == "__main__":
    main()
