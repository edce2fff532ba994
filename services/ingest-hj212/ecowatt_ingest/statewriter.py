"""Session state to Redis: new sessions in batches, changes every `session_flush_s`.

The session table tells the writer when a session is bound (`bound`) or ends (`ended`); the
writer turns that, and the counters the dispatcher keeps on each session, into pipelines of
`SessionStore` writes. New sessions are written every 50 ms (a reconnect storm is one
pipeline per tick) and the writer learns each device's previous last-seen time from the
same round trip, for the automatic backfill (`on_previous_seen`). A session's later writes
wait until its binding is stored, and are conditional on the device's hash still naming the
session (`SessionStore.write`): with several instances or workers the newest connection's
session owns the hash, and with `announce` (several workers) the binding is published so
that the instance holding an older connection of the device closes it. Nothing here is
authoritative: the state is rebuilt from live connections.

Frames refused at the door (`unverified`) are noted per MN between flushes — at most
`unverified_max_mns` MNs per flush, the rest only counted — and written to the capped,
expiring `unverified` keys of the store, never to a device's own hash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ecowatt_ingest import metrics
from ecowatt_ingest.connection import Session
from ecowatt_ingest.devices import UNREGISTERED_REASONS, DeviceDirectory
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.state import SessionStore, Unverified

__all__ = ["COUNTERS", "StateWriter"]

_logger = logging.getLogger(__name__)

COUNTERS = ("frames", "accepted", "rejected", "duplicates", "bytes")
"""Per-session counters written to `ingest:dev:{mn}`, in `Session.flushed` order."""


class StateWriter:
    """See the module docstring."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        store: SessionStore,
        directory: DeviceDirectory,
        instance: str,
        live: Mapping[str, Session],
        announce: bool = False,
    ) -> None:
        self.settings = settings
        self.announce = announce
        self.store = store
        self.directory = directory
        self.instance = instance
        self.live = live
        self.on_previous_seen: Callable[[Session], None] = lambda session: None
        """Called once a new session's previous last-seen time is known (backfill)."""
        self._offline: list[tuple[str, str, float]] = []
        self._unflushed: list[Session] = []
        self._new: list[Session] = []
        self._wakeup = asyncio.Event()
        self._unverified: dict[str, Unverified] = {}

    # ------------------------------------------------------------------ from the table
    def bound(self, session: Session) -> None:
        """A new session: written within 50 ms."""
        self._new.append(session)
        self._wakeup.set()

    def ended(self, session: Session, at: float) -> None:
        """A session's connection is gone: its last counters and the offline mark."""
        self._offline.append((session.mn, session.session_id, at))
        session.dirty = True
        self._unflushed.append(session)

    def retired(self, session: Session, at: float) -> None:
        """Shutdown: mark the session offline (its counters are written with the rest)."""
        self._offline.append((session.mn, session.session_id, at))

    def unverified(self, mn: str, reason: str, peer: str, wall: float, cn: str | None) -> None:
        """A frame of `mn` refused at the door (kept apart from any device's state)."""
        entry = self._unverified.get(mn)
        if entry is None:
            if len(self._unverified) >= self.settings.unverified_max_mns:
                metrics.UNVERIFIED_DROPPED.inc()
                return
            entry = self._unverified[mn] = Unverified(mn=mn, first_seen=wall)
        entry.reason = reason
        entry.listed = reason in UNREGISTERED_REASONS
        entry.peer = peer
        entry.last_seen = wall
        entry.cn = cn
        entry.frames += 1

    # ------------------------------------------------------------------ writing
    def fields(self, session: Session) -> dict[str, Any]:
        """The `ingest:dev:{mn}` fields of a session (counters aside)."""
        fields: dict[str, Any] = {
            "mn": session.mn,
            "last_seen": round(session.last_seen, 3),
            "peer": session.peer,
            "session_id": session.session_id,
            "instance": self.instance,
            "connected_at": round(session.connected_at, 3),
            "online": 1 if session.conn is not None else 0,
        }
        if session.version is not None:
            fields["version"] = session.version.value
        if session.registered is not None:
            fields["registered"] = session.registered
            fields["identity"] = session.identity
        device = self.directory.device(session.mn)
        if device is not None:
            fields["crc_variant"] = device.crc_variant
        return fields

    async def write(self) -> None:
        """Changed sessions, their rejects and offline marks: one pipeline."""
        updates: list[tuple[str, dict[str, Any], bool | None]] = []
        rejects: dict[str, list[str]] = {}
        sessions: Iterable[Session] = [*self.live.values(), *self._unflushed]
        self._unflushed.clear()
        for session in sessions:
            if not session.stored:  # its binding is not in Redis yet: written next time
                continue
            counters = (
                session.frames,
                session.accepted,
                session.rejected,
                session.duplicates,
                session.bytes,
            )
            if counters == session.flushed and not session.dirty:
                continue
            session.flushed = counters
            session.dirty = False
            fields = self.fields(session)
            if session.conn is None:
                fields.pop("online")
            fields.update(zip(COUNTERS, counters, strict=True))
            updates.append((session.mn, fields, session.registered))
            if session.rejects:
                rejects[session.mn] = session.rejects[::-1]
                session.rejects = None
        offline, self._offline = self._offline, []
        if updates or rejects or offline:
            await self.store.write(updates, rejects, offline, self.settings.recent_rejects)
        if self._unverified:
            entries, self._unverified = list(self._unverified.values()), {}
            await self.store.write_unverified(
                entries,
                keep=self.settings.unverified_max_mns,
                ttl_s=self.settings.unverified_ttl_s,
            )

    # ------------------------------------------------------------------ loops
    async def flush_loop(self) -> None:
        """Write session state every `session_flush_s`; keep the instance heartbeat alive."""
        settings = self.settings
        heartbeat_every = max(1.0, settings.instance_ttl_s / 3)
        last_heartbeat = 0.0
        while True:
            try:
                now = time.monotonic()
                if now - last_heartbeat >= heartbeat_every:
                    await self.store.heartbeat(settings.instance_ttl_s)
                    last_heartbeat = now
                await self.write()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _logger.warning("session state not written to Redis", extra={"error": repr(exc)})
            await asyncio.sleep(settings.session_flush_s)

    async def bind_loop(self) -> None:
        """Write new sessions in batches and learn each device's previous last-seen time."""
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(0.05)
            self._wakeup.clear()
            sessions, self._new = self._new, []
            if not sessions:
                continue
            try:
                previous = await self.store.bind(
                    [(s.mn, self.fields(s)) for s in sessions], announce=self.announce
                )
            except Exception as exc:
                _logger.warning(
                    "new sessions not written to Redis",
                    extra={"sessions": len(sessions), "error": repr(exc)},
                )
                # tried again on the next binding or within a second
                self._new[:0] = [s for s in sessions if s.conn is not None]
                asyncio.get_running_loop().call_later(1.0, self._wakeup.set)
                continue
            for session, seen in zip(sessions, previous, strict=True):
                session.stored = True
                session.previous_seen = seen
                if session.conn is not None:
                    self.on_previous_seen(session)
