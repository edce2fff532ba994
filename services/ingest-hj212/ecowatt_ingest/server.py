"""The HJ 212 TCP server: frames in, durable records out, answers after the bus's ack.

For every byte span a connection delivers, the server records a `FrameReceived` on
`hj212.frames` (accepted, unregistered, duplicate or rejected, with the reason) and, for data
frames, a `TelemetryReading` on `telemetry.readings`; both go into one batched publish and the
answer is written only from the publish's completion callback. See the README for the
protocol behaviour and the policies.

`IngestServer` owns the listening socket and the lifecycle and wires the parts, each in a
module of its own:

* `dispatch.Dispatcher` — frame → verdict → publish → answer (every connection's host);
* `door.Door` — device identity before anything else (`guard.PeerGuard`: PW failures);
* `sessions.SessionTable` — connections, binding to a verified MN, replacement, ends;
* `recorder.FrameRecorder` — `hj212.frames` records, answers once durable;
* `timekeeping.Timekeeper` — history flag, clock judgement (1012), automatic backfill;
* `statewriter.StateWriter` — session state (and refused MNs, capped) to Redis;
* `commands.CommandManager` — reverse commands, through the table's `SessionLink`;
* `publisher.BatchPublisher`, `devices.DeviceDirectory`, `state.SessionStore` below them.

As one of several workers (`ECOWATT_INGEST_WORKERS` > 1, `workers.WorkerPool`) the server
binds its port with SO_REUSEPORT, notes durable uploads in Redis and loads a device's before
binding it (the duplicate check across workers), announces new bindings and closes its own
connection of a device another worker just bound (`_takeover_loop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from ecowatt_kernel.bus import Bus
from ecowatt_kernel.redis_client import Redis
from ecowatt_kernel.registry_view import RegistryView

from ecowatt_ingest import metrics
from ecowatt_ingest.commands import CommandManager
from ecowatt_ingest.connection import BACKPRESSURE, DeviceConnection, Session
from ecowatt_ingest.devices import DeviceDirectory
from ecowatt_ingest.dispatch import DATA_CNS, Dispatcher
from ecowatt_ingest.door import Door
from ecowatt_ingest.guard import PeerGuard
from ecowatt_ingest.publisher import BatchPublisher
from ecowatt_ingest.recorder import FrameRecorder
from ecowatt_ingest.sessions import SessionTable
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.state import SessionStore
from ecowatt_ingest.statewriter import StateWriter
from ecowatt_ingest.timebase import TimeBase
from ecowatt_ingest.timekeeping import Timekeeper

__all__ = ["DATA_CNS", "IngestServer"]

_logger = logging.getLogger(__name__)


class IngestServer:
    """Owns the listening socket, the background loops and the parts they drive."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        bus: Bus,
        redis: Redis,
        registry: RegistryView,
        instance: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.instance = instance or settings.worker_instance
        self.time = TimeBase(settings.timezone, clock)
        self.directory = DeviceDirectory(registry)
        self.registry = registry
        self.store = SessionStore(redis, prefix=settings.redis_prefix, instance=self.instance)
        self.publisher = BatchPublisher(
            bus,
            batch_max=settings.publish_batch_max,
            linger_s=settings.publish_linger_s,
            concurrency=settings.publish_concurrency,
            high_watermark=settings.publish_high_watermark,
            low_watermark=settings.publish_low_watermark,
            retry_max_s=settings.publish_retry_max_s,
            on_pressure=self._on_pressure,
        )
        live: dict[str, Session] = {}
        shared = settings.shares_state
        self.writer = StateWriter(
            settings,
            store=self.store,
            directory=self.directory,
            instance=self.instance,
            live=live,
            announce=shared,
        )
        self.table = SessionTable(settings, writer=self.writer, now=clock, sessions=live)
        self.commands = CommandManager(
            settings,
            instance=self.instance,
            store=self.store,
            publisher=self.publisher,
            sessions=self.table,
            directory=self.directory,
            time_base=self.time,
        )
        self.recorder = FrameRecorder(
            settings,
            instance=self.instance,
            publisher=self.publisher,
            directory=self.directory,
            time_base=self.time,
        )
        self.timekeeper = Timekeeper(settings, time_base=self.time, commands=self.commands)
        self.dispatcher = Dispatcher(
            settings,
            directory=self.directory,
            sessions=self.table,
            recorder=self.recorder,
            commands=self.commands,
            timekeeper=self.timekeeper,
            time_base=self.time,
            store=self.store if shared else None,
        )
        if shared:
            self.publisher.before_complete = self.dispatcher.share_uploads
        self.guard = PeerGuard(
            max_failures=settings.pw_failures_max,
            window_s=settings.pw_failure_window_s,
            block_s=settings.pw_block_s,
            now=clock,
            shared_networks=settings.pw_failures_per_mn_from,
        )
        self.dispatcher.door = Door(
            settings,
            directory=self.directory,
            sessions=self.table,
            recorder=self.recorder,
            writer=self.writer,
            guard=self.guard,
            spawn=self.spawn,
            on_verified=self.dispatcher.dispatch,
            before_bind=self.dispatcher.load_uploads if shared else None,
        )
        self.table.on_session_end = self.commands.on_disconnect
        self.writer.on_previous_seen = self.timekeeper.maybe_backfill
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.port: int | None = None
        self.serving = asyncio.Event()

    # ------------------------------------------------------------------ views for the API
    @property
    def connections(self) -> set[DeviceConnection]:
        return self.table.connections

    @property
    def sessions(self) -> dict[str, Session]:
        return self.table.sessions

    @property
    def stats(self) -> dict[str, int]:
        """Frames recorded, answers written after the bus's ack, rejected frames and spans."""
        return self.recorder.stats

    def local_now(self) -> datetime:
        """The deployment's local time, naive (what HJ 212 devices speak)."""
        return self.time.local_now()

    # ------------------------------------------------------------------ lifecycle
    async def start(self, *, wait_for_registry: bool = True) -> None:
        """Bind the port, start the background loops; serve once the registry is ready."""
        if self.settings.raise_nofile:
            self._raise_nofile()
        loop = asyncio.get_running_loop()
        dispatcher = self.dispatcher
        self._server = await loop.create_server(
            lambda: DeviceConnection(dispatcher),
            host=self.settings.hj212_host,
            port=self.settings.hj212_port,
            backlog=self.settings.hj212_backlog,
            reuse_address=True,
            reuse_port=self.settings.shares_state or None,
            start_serving=False,
        )
        sockets = self._server.sockets
        self.port = sockets[0].getsockname()[1] if sockets else None
        self._tasks = [
            loop.create_task(self._sweep_loop(), name="ingest:sweep"),
            loop.create_task(self.writer.flush_loop(), name="ingest:state"),
            loop.create_task(self.writer.bind_loop(), name="ingest:bind"),
            loop.create_task(self._serve_when_ready(wait_for_registry), name="ingest:serve"),
        ]
        if self.settings.shares_state:
            self._tasks.append(loop.create_task(self._takeover_loop(), name="ingest:takeover"))
        _logger.info(
            "HJ 212 server bound", extra={"host": self.settings.hj212_host, "port": self.port}
        )

    async def _serve_when_ready(self, wait_for_registry: bool) -> None:
        if wait_for_registry:
            try:
                await self.registry.wait_ready(self.settings.wait_for_registry_s)
            except TimeoutError:
                _logger.warning(
                    "registry view not caught up: serving devices anyway",
                    extra={"waited_s": self.settings.wait_for_registry_s},
                )
        assert self._server is not None
        await self._server.start_serving()
        self.serving.set()
        _logger.info("HJ 212 server accepting devices", extra={"port": self.port})

    async def stop(self) -> None:
        """Stop accepting, answer what is durable, close connections, retire sessions."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.table.connections):
            conn.pause(BACKPRESSURE)
        # Frames still waiting for their PW check were neither recorded nor answered: give
        # them up now (their devices send them again) rather than hash every queued PW
        # first — after a reconnect storm that can be minutes of scrypt.
        self.directory.close()
        for task in self._background:
            if task.get_name() == "ingest:verify":
                task.cancel()
        await self.publisher.close(timeout_s=10.0)
        self.recorder.tally.flush()
        self.commands.stop()
        await self.commands.flush()
        for task in self._tasks:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        now = self.time.now()
        for conn in list(self.table.connections):
            conn.closed = True
            conn.abort()
        for session in list(self.table.sessions.values()):
            self.writer.retired(session, now)
        with contextlib.suppress(Exception):
            await self.writer.write()
            await self.store.retire()
        self.directory.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def _raise_nofile(self) -> None:
        want = self.settings.max_connections + 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft >= want:
            return
        for limits in ((want, max(hard, want)), (min(want, hard), hard)):
            if limits[0] <= soft:
                continue
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            except (ValueError, OSError):
                continue
            _logger.info("RLIMIT_NOFILE raised", extra={"from": soft, "to": limits[0]})
            return
        if soft < want:
            _logger.warning(
                "RLIMIT_NOFILE too low: fewer than max_connections fit",
                extra={"soft": soft, "hard": hard, "max_connections": want - 1024},
            )

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_pressure(self, on: bool) -> None:
        self.table.set_pressure(on)
        if on:
            metrics.THROTTLED.labels("backpressure").inc()
            _logger.warning(
                "bus backpressure: reading paused", extra={"pending": self.publisher.pending}
            )

    # ------------------------------------------------------------------ loops
    async def _takeover_loop(self) -> None:
        """Close this worker's connection of a device that another worker just bound."""
        channel = self.store.bound_channel
        while True:
            pubsub = self.store.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                async for message in pubsub.listen():
                    data = message.get("data")
                    if not isinstance(data, bytes):
                        continue
                    instance, *lines = data.decode().split("\n")
                    if instance != self.instance:
                        self._taken_over(lines)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _logger.warning("binding announcements lost", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _taken_over(self, lines: list[str]) -> None:
        """Sessions bound elsewhere ("MN connected_at" each): close ours if older."""
        for line in lines:
            mn, _, at = line.rpartition(" ")
            session = self.table.owns(mn)
            if session is None or session.conn is None:
                continue
            try:
                newer = float(at) > session.connected_at
            except ValueError:
                continue
            if newer:
                _logger.info("device reconnected to another worker", extra={"mn": mn})
                self.table.close_connection(session.conn, "replaced")

    async def _sweep_loop(self) -> None:
        """Flush idle framers, time out partial frames and idle connections, expire splits."""
        settings = self.settings
        dispatcher = self.dispatcher
        tick = min(0.1, settings.flush_idle_s / 2)
        last_idle_check = 0.0
        while True:
            await asyncio.sleep(tick)
            try:
                self.recorder.tally.flush()
                now = time.monotonic()
                for conn in list(dispatcher.holding):
                    framer = conn.framer
                    if framer is None or conn.closed:
                        dispatcher.holding.discard(conn)
                        continue
                    idle = now - conn.last_rx
                    if (idle >= settings.flush_idle_s and not framer.mid_frame) or (
                        now - conn.partial_since >= settings.partial_frame_timeout_s
                    ):
                        conn.flush_framer()
                if now - last_idle_check >= 1.0:
                    last_idle_check = now
                    limit = settings.idle_timeout_s
                    for conn in [c for c in self.table.connections if now - c.last_rx > limit]:
                        self.table.close_connection(conn, "idle")
                    dispatcher.expire_splits()
                    self.guard.sweep()
                    metrics.BLOCKED_PEERS.set(self.guard.blocked_count)
            except Exception:
                _logger.exception("sweep failed")
