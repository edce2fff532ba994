"""Connections and the device sessions bound to them.

The table owns every open connection (and the connection limit), binds a connection to a
device MN once the door verified the device, lets a device's new (verified) connection
replace its old one, and ends sessions when their connection goes. It is what the command
manager sees of sessions (`SessionLink`: `owns`, `send_to`, `live_sessions`) and what the
state writer writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from ecowatt_ingest import metrics
from ecowatt_ingest.connection import BACKPRESSURE, DeviceConnection, Session
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.statewriter import StateWriter
from ecowatt_ingest.wire import new_id

__all__ = ["SessionTable"]

_logger = logging.getLogger(__name__)


class SessionTable:
    """See the module docstring."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        writer: StateWriter,
        now: Callable[[], float],
        sessions: dict[str, Session],
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.now = now
        self.connections: set[DeviceConnection] = set()
        self.sessions = sessions
        """Live sessions by MN (the same dict the state writer reads)."""
        self.on_session_end: Callable[[Session], None] = lambda session: None
        """Called when a session's connection is gone (the command manager's hook)."""
        self.pressure = False
        self._connections_seen = 0

    # ------------------------------------------------------------------ connections
    def on_connection_made(self, conn: DeviceConnection) -> None:
        if len(self.connections) >= self.settings.max_connections:
            metrics.CONNECTIONS_OPENED.labels("refused_limit").inc()
            conn.closed = True
            conn.abort()
            return
        self._connections_seen += 1
        conn.conn_id = self._connections_seen
        self.connections.add(conn)
        metrics.CONNECTIONS_OPENED.labels("accepted").inc()
        metrics.CONNECTIONS.set(len(self.connections))
        assert conn.transport is not None
        conn.transport.set_write_buffer_limits(high=self.settings.write_buffer_high)
        if self.pressure:
            conn.pause(BACKPRESSURE)

    def on_connection_lost(self, conn: DeviceConnection, exc: Exception | None) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        metrics.CONNECTIONS.set(len(self.connections))
        reason = conn.reason or ("peer" if exc is None else "error")
        metrics.CONNECTIONS_CLOSED.labels(reason).inc()
        session = conn.session
        if session is not None:
            session.conn = None
            if self.sessions.get(session.mn) is session:
                del self.sessions[session.mn]
                metrics.SESSIONS.set(len(self.sessions))
                self.writer.ended(session, self.now())
            self.on_session_end(session)

    def close_connection(self, conn: DeviceConnection, reason: str) -> None:
        if conn.closed:
            return
        conn.reason = reason
        conn.close()

    def set_pressure(self, on: bool) -> None:
        """The bus lags (`on`) or caught up: pause or resume reading every connection."""
        self.pressure = on
        for conn in list(self.connections):
            if on:
                conn.pause(BACKPRESSURE)
            elif self.pressure:
                break  # a resumed connection's backlog brought the pressure back
            else:
                conn.resume(BACKPRESSURE)

    # ------------------------------------------------------------------ sessions
    def bind(self, conn: DeviceConnection, mn: str, identity: str) -> Session:
        """Bind the connection to `mn` — only ever after the door verified `identity` — and
        let it replace the device's older connection."""
        old = self.sessions.get(mn)
        session = Session(mn, conn, new_id(), self.now(), identity)
        self.sessions[mn] = session
        conn.session = session
        metrics.SESSIONS.set(len(self.sessions))
        if old is not None and old.conn is not None and old.conn is not conn:
            # the device reconnected while its old connection looked alive: the new one wins
            self.close_connection(old.conn, "replaced")
        self.writer.bound(session)
        return session

    def owns(self, mn: str) -> Session | None:
        """The live session of `mn` on this instance, if any."""
        session = self.sessions.get(mn)
        if session is None or session.conn is None or session.conn.closed:
            return None
        return session

    def send_to(self, session: Session, data: bytes) -> bool:
        """Write to the session's device; False when its connection is gone."""
        conn = session.conn
        if conn is None or conn.closed:
            return False
        conn.write(data)
        return True

    def live_sessions(self) -> Iterator[Session]:
        return iter(list(self.sessions.values()))
