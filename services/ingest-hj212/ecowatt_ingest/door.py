"""The device door: no frame reaches a session, a reading or a command before its device's
identity is verified.

A frame that decoded with a valid length and CRC comes here with its MN. Its identity is the
registry's verdict on (MN, PW) (`devices.DeviceDirectory`): cached verdicts cost a lookup,
others one scrypt in a worker thread while the connection's later frames wait in order.

* Verified (`ok`, or `pw_not_provisioned` under the `lenient` policy): the connection binds
  to the MN — replacing the device's older connection — if it has no session yet, and the
  frame goes on to the dispatcher. `pw_not_provisioned` never replaces a live session of
  its MN (anyone can claim an MN that has no PW).
* Refused (`unknown_mn`, `device_disabled`, `bad_password`, `pw_not_provisioned` under
  `strict`, `mn_in_use`): recorded on `hj212.frames` (`unregistered` when the registry
  does not hold a usable entry for the MN, `rejected` otherwise) with its reason, answered
  after it is durable with the standard's 9011 code (QnRtn 4 MN error, 3 PW error, 2
  refused) when it carries a QN, and noted in Redis under the MN's small, capped and
  expiring `unverified` entry — never in the device's own state. No session is bound or
  replaced, nothing goes to `telemetry.readings`, no command is sent.
* PW failures count against the peer's address (`guard.PeerGuard`; per address and MN for
  the networks of `pw_failures_per_mn_from`, e.g. a NAT gateway); the failure that
  reaches the limit is refused like the others and then closes the connection (once its
  answer is written), and while the address is blocked its frames
  pass only with an identity already known to be right: the rest are recorded as
  `rejected` / `peer_blocked`, unchecked and unanswered, and their connection is closed.

With `before_bind` (several workers), a verified frame on a connection without a session
waits, like a frame whose PW is checked, until the hook ran for its MN (the dispatcher
loads the device's recent uploads from Redis, so that a re-send to this worker of an upload
another worker took is a duplicate).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import ecowatt_hj212 as hj212
from ecowatt_hj212 import commands as hj212_commands

from ecowatt_ingest import metrics
from ecowatt_ingest.connection import AUTH, DeviceConnection, Session
from ecowatt_ingest.devices import (
    BAD_PASSWORD,
    DEVICE_DISABLED,
    EXPLANATIONS,
    OK,
    PW_NOT_PROVISIONED,
    UNKNOWN_MN,
    UNREGISTERED_REASONS,
    DeviceDirectory,
)
from ecowatt_ingest.guard import PeerGuard
from ecowatt_ingest.recorder import (
    ANSWER_CNS,
    REJECTED,
    UNREGISTERED,
    FrameRecorder,
    encode_answer,
)
from ecowatt_ingest.sessions import SessionTable
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.statewriter import StateWriter

__all__ = ["CONNECTION_CLOSED", "MN_IN_USE", "PEER_BLOCKED", "Door"]

_logger = logging.getLogger(__name__)

MN_IN_USE = "mn_in_use"
PEER_BLOCKED = "peer_blocked"
CONNECTION_CLOSED = "connection_closed"

_QN_RTN = {
    UNKNOWN_MN: 4,  # MN error
    DEVICE_DISABLED: 4,
    BAD_PASSWORD: 3,  # PW error
    PW_NOT_PROVISIONED: 3,
    MN_IN_USE: 2,  # request refused
}
_EXPLANATIONS = {
    **EXPLANATIONS,
    MN_IN_USE: "MN {mn} has a live session and no PW in the registry: a second connection "
    "cannot take it over",
}

Verified = Callable[[DeviceConnection, Session, hj212.Frame, float, float], None]


class Door:
    """See the module docstring."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        directory: DeviceDirectory,
        sessions: SessionTable,
        recorder: FrameRecorder,
        writer: StateWriter,
        guard: PeerGuard,
        spawn: Callable[..., None],
        on_verified: Verified,
        before_bind: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.before_bind = before_bind
        self.directory = directory
        self.sessions = sessions
        self.recorder = recorder
        self.writer = writer
        self.guard = guard
        self.spawn = spawn
        self.on_verified = on_verified
        self.lenient = settings.device_policy == "lenient"

    def enter(self, conn: DeviceConnection, frame: hj212.Frame, mn: str) -> None:
        """A frame with a valid length and CRC, of `mn`: verify it, then pass or refuse."""
        waiting = conn.waiting
        if waiting is not None:  # an earlier frame's PW is being checked: keep the order
            waiting.append((frame, conn.rx_wall, conn.rx_perf))
            return
        identity = self.directory.cached(mn, frame.pw)
        session = conn.session
        if session is not None and identity == session.identity == OK:  # the common case
            self.on_verified(conn, session, frame, conn.rx_wall, conn.rx_perf)
            return
        if identity is None or (
            session is None and self.before_bind is not None and self._verified(identity)
        ):
            if identity is None and self.guard.blocked(self.guard.key(conn.address, mn)):
                self._refuse_blocked(conn, frame, conn.rx_wall)
                return
            conn.waiting = [(frame, conn.rx_wall, conn.rx_perf)]
            conn.pause(AUTH)
            self.spawn(self._verify(conn), "ingest:verify")
            return
        self._decide(conn, frame, mn, identity, conn.rx_wall, conn.rx_perf)

    async def _verify(self, conn: DeviceConnection) -> None:
        prepared: set[str] = set()
        try:
            while conn.waiting:
                frame, wall, perf = conn.waiting[0]
                mn = frame.mn or ""
                identity = self.directory.cached(mn, frame.pw)
                if identity is None:
                    if self.guard.blocked(self.guard.key(conn.address, mn)):
                        conn.waiting.pop(0)
                        self._refuse_blocked(conn, frame, wall)
                        continue
                    await self.directory.verify(mn, frame.pw)
                    continue
                if (
                    conn.session is None
                    and self.before_bind is not None
                    and mn not in prepared
                    and self._verified(identity)
                ):
                    prepared.add(mn)
                    try:
                        await asyncio.wait_for(self.before_bind(mn), 2.0)
                    except Exception as exc:  # Redis away: bind anyway, duplicates less sure
                        _logger.warning(
                            "recent uploads not loaded", extra={"mn": mn, "error": repr(exc)}
                        )
                    continue
                conn.waiting.pop(0)
                self._decide(conn, frame, mn, identity, wall, perf)
        except Exception:
            _logger.exception("PW verification failed", extra={"peer": conn.peer})
        finally:
            conn.waiting = None
            conn.resume(AUTH)

    def _verified(self, identity: str) -> bool:
        return identity == OK or (identity == PW_NOT_PROVISIONED and self.lenient)

    def _decide(
        self,
        conn: DeviceConnection,
        frame: hj212.Frame,
        mn: str,
        identity: str,
        wall: float,
        perf: float,
    ) -> None:
        if not self._verified(identity):
            if self.guard.blocked(self.guard.key(conn.address, mn)):
                self._refuse_blocked(conn, frame, wall)
            else:
                self._refuse(conn, frame, mn, identity, wall, perf)
            return
        session = conn.session
        if session is None:
            if conn.closed:  # gone while its PW was checked: nothing to bind, nobody to answer
                self.recorder.record_rejected(
                    conn,
                    frame.raw,
                    CONNECTION_CLOSED,
                    "the connection closed before the frame's PW check ended; not answered "
                    "(the device sends it again)",
                    mn=mn,
                    cn=frame.cn,
                    qn=frame.qn,
                    wall=wall,
                )
                return
            if identity == PW_NOT_PROVISIONED and self.sessions.owns(mn) is not None:
                self._refuse(conn, frame, mn, MN_IN_USE, wall, perf)
                return
            session = self.sessions.bind(conn, mn, identity)
        elif session.identity != identity:
            session.identity = identity
            session.dirty = True
        self.on_verified(conn, session, frame, wall, perf)

    def _refuse(
        self,
        conn: DeviceConnection,
        frame: hj212.Frame,
        mn: str,
        reason_code: str,
        wall: float,
        perf: float,
    ) -> None:
        explanation = _EXPLANATIONS[reason_code].format(mn=mn)
        verdict = UNREGISTERED if reason_code in UNREGISTERED_REASONS else REJECTED
        answer = None
        if frame.qn and frame.cn not in ANSWER_CNS:
            code = _QN_RTN[reason_code]
            answer = encode_answer(hj212_commands.request_answer(frame, code))
        session = conn.session
        if session is not None and session.mn == mn:  # the bound device's own frame
            session.rejected += 1
            session.dirty = True
        entry = self.recorder.record(
            conn, frame, verdict, reason_code, explanation, wall, perf, answer=answer
        )
        self.writer.unverified(mn, reason_code, conn.peer, wall, frame.cn)
        if reason_code != BAD_PASSWORD:
            return
        metrics.PW_FAILURES.inc()
        if self.guard.failure(self.guard.key(conn.address, mn)):
            metrics.PEERS_BLOCKED.inc()
            metrics.BLOCKED_PEERS.set(self.guard.blocked_count)
            _logger.warning(
                "peer blocked after repeated PW failures",
                extra={
                    "address": conn.address,
                    "failures": self.settings.pw_failures_max,
                    "window_s": self.settings.pw_failure_window_s,
                    "block_s": self.settings.pw_block_s,
                },
            )
            # closed once this refusal is durable and answered (the answer goes first)
            entry.then(lambda: self.sessions.close_connection(conn, "pw_failures"))

    def _refuse_blocked(self, conn: DeviceConnection, frame: hj212.Frame, wall: float) -> None:
        mn = frame.mn or ""
        key = self.guard.key(conn.address, mn)
        until = self.guard.blocked_until(key) or wall
        source = conn.address if key == conn.address else f"{conn.address} for MN {mn}"
        settings = self.settings
        self.recorder.record_rejected(
            conn,
            frame.raw,
            PEER_BLOCKED,
            f"{settings.pw_failures_max} PW failures from {source} within "
            f"{settings.pw_failure_window_s:.0f} s: frames whose identity is not already "
            f"known are refused unchecked until {datetime.fromtimestamp(until, UTC).isoformat()}",
            mn=frame.mn,
            cn=frame.cn,
            qn=frame.qn,
            wall=wall,
        )
        self.sessions.close_connection(conn, "pw_failures")
