"""`make run`: the whole platform in one process.

Starts embedded PostgreSQL and Redis (data in `.data/`, kept between runs), builds every
service on one in-process bus, mounts each under `/api/<service>/` of the gateway on port
8000, and serves until Ctrl-C; then stops the consumers (committing what they handled), the
bus, and the embedded servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import uvicorn
from ecowatt_kernel.logging import configure_logging
from ecowatt_kernel.settings import settings_or_exit

from ecowatt_standalone.gateway import Standalone, StandaloneSettings

_logger = logging.getLogger("ecowatt.standalone")


async def serve(platform: Standalone) -> None:
    """Serve the gateway until SIGINT or SIGTERM (uvicorn runs the lifespan shutdown)."""
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
    _logger.info(
        "EcoWatt standalone on http://%s:%d (data in %s)",
        settings.http_host,
        settings.http_port,
        settings.data_dir.resolve(),
    )
    await server.serve()


def main() -> None:
    settings = settings_or_exit(StandaloneSettings)
    configure_logging(service="standalone", level=settings.log_level, fmt=settings.log_format)
    platform = Standalone(settings)
    platform.start_servers()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(platform))
    finally:
        _logger.info("stopping embedded PostgreSQL and Redis")
        platform.stop_servers()


if __name__ == "__main__":
    main()
