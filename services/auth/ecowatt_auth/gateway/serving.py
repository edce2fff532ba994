"""Serving several ASGI apps from one process (the gateway and an operations port)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator

import uvicorn

__all__ = ["QuietServer", "serve_together"]


class QuietServer(uvicorn.Server):
    """A server that leaves signals to the main one (two servers cannot both own SIGINT)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_together(main: uvicorn.Server, *others: QuietServer) -> None:
    """Serve `main` (which handles SIGINT/SIGTERM and runs the lifespan) and `others`; when
    `main` stops, stop the others."""
    tasks = [asyncio.create_task(server.serve()) for server in others]
    try:
        await main.serve()
    finally:
        for server in others:
            server.should_exit = True
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
