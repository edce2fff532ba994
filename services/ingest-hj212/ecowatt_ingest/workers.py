"""Several processes behind one HJ 212 port: `ECOWATT_INGEST_WORKERS`.

One Python process decodes, judges and publishes frames on one core; a second process on
another core doubles what a host takes. Each worker is a full `IngestServer`
(`python -m ecowatt_ingest.tcp` with `ECOWATT_INGEST_WORKER_INDEX` set) that binds the same
port with SO_REUSEPORT, so the kernel spreads new connections over the workers' listening
sockets; a connection stays with the worker that accepted it. What a device needs across
connections lives in Redis, which every worker shares: its session (the newest binding owns
the device's hash and the other workers close their older connection of it), its recent
uploads (the duplicate check), the command claim and owner (reverse commands reach the
worker holding the device). Each worker is an instance of its own (`<instance_id>-w<k>`):
its own command consumer group, heartbeat and sessions set.

`WorkerPool` starts workers, waits until each prints `ready <port>`, restarts one that dies
(after a pause that grows while it keeps dying) and stops them with SIGTERM, which lets each
answer what is durable and retire its sessions. Standalone (an in-process bus) runs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

__all__ = ["WorkerPool", "reserve_port"]

_logger = logging.getLogger(__name__)


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to `port` with SO_REUSEPORT: picks a free port for
    `port` 0 and holds it while the workers bind theirs; the kernel only hands connections
    to listening sockets, so it takes none."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


async def _pass_through(stream: asyncio.StreamReader) -> None:
    """Copy what a worker writes to stdout after `ready` (its pipe must not fill up)."""
    with contextlib.suppress(Exception):
        while line := await stream.readline():
            sys.stdout.buffer.write(line)
            sys.stdout.flush()


class WorkerPool:
    """See the module docstring."""

    def __init__(
        self,
        indexes: range,
        *,
        port: int,
        env: dict[str, str] | None = None,
        ready_timeout_s: float = 180.0,
    ) -> None:
        self.indexes = indexes
        self.port = port
        self.env = dict(os.environ if env is None else env)
        self.ready_timeout_s = ready_timeout_s
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._readers: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self) -> None:
        """Start every worker and wait until each accepts devices."""
        started = await asyncio.gather(*(self._spawn(k) for k in self.indexes))
        for index, process in zip(self.indexes, started, strict=True):
            self.processes[index] = process
        loop = asyncio.get_running_loop()
        self._watchers = [
            loop.create_task(self._watch(k), name=f"ingest:worker-{k}") for k in self.indexes
        ]

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        env = {
            **self.env,
            "ECOWATT_INGEST_WORKER_INDEX": str(index),
            "ECOWATT_HJ212_PORT": str(self.port),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ecowatt_ingest.tcp",
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(self.ready_timeout_s):
                while True:
                    line = await process.stdout.readline()
                    if not line:
                        raise RuntimeError(f"ingest worker {index} exited before it was ready")
                    if line.startswith(b"ready "):
                        break
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        _logger.info("ingest worker ready", extra={"worker": index, "pid": process.pid})
        reader = asyncio.get_running_loop().create_task(_pass_through(process.stdout))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        return process

    async def _watch(self, index: int) -> None:
        pause = 1.0
        while True:
            process = self.processes[index]
            code = await process.wait()
            if self.stopping:
                return
            _logger.error("ingest worker exited: restarting", extra={"worker": index, "code": code})
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)
            try:
                self.processes[index] = await self._spawn(index)
                pause = 1.0
            except Exception as exc:
                _logger.error("ingest worker restart failed", extra={"error": repr(exc)})

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every worker (each drains and retires its sessions); kill stragglers."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        for process in self.processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                await asyncio.wait_for(process.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
