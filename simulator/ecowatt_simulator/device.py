"""One simulated data logger: it samples its meters, reports, keeps history, answers.

A device runs two loops: the *timeline* steps through simulated time in `sample_s` steps
(device-clock seconds), integrates energy counters, builds real-time (2011), minute (2051),
hour (2061) and day (2031) uploads and keeps the statistics in its history buffer; the
*connection* loop keeps a TCP connection up (exponential back-off with jitter) and hands the
uploads to the platform. Uploads that ask for an answer stay in `unacked` until the 9014
(9013 for 1013) comes; after `ack_timeout_s` they are sent again, unchanged; after `recount`
resends the link counts as dead and is reopened, and everything unanswered is sent again on
the new connection. Nothing is dropped.

The connection and its queue items live in `link.py`, the code groups of the uploads in
`groups.py`. Why `SimDevice` is still one class of ~800 lines: its timeline, send queue,
connection loop and command handlers are one state machine over the same fields (the
unacked uploads, the device clock and its drift, the history buffer, the offline window), and
each handler changes several of them at once — a command answer is queued and paced like an
upload, a backfill reads the history the timeline writes, a reconnect resends what the ack
timer holds. Splitting them would pass that state between objects on every frame of a
20,000-device fleet; the sections below (lifecycle, clocks, timeline, encoding, sending,
connection, from server) are the seams if it grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import ecowatt_hj212 as hj212
from ecowatt_hj212 import commands, swap_bytes

from ecowatt_simulator import wire
from ecowatt_simulator.faults import FaultPlan
from ecowatt_simulator.fleet import DeviceSpec, PointSpec
from ecowatt_simulator.groups import Acc, circuit_keys, interval_groups, sample_groups
from ecowatt_simulator.kinds import FaultKind
from ecowatt_simulator.link import Flag, Link, Outgoing
from ecowatt_simulator.load import LoadModel, Sample
from ecowatt_simulator.log import SentLog
from ecowatt_simulator.orders import OrderBook
from ecowatt_simulator.rand import Stream, key_of
from ecowatt_simulator.timebase import LocalTime, SimClock

__all__ = ["DeviceHost", "DeviceSettings", "SimDevice"]

_logger = logging.getLogger("ecowatt.simulator")

MIN_INTERVALS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)
_FRAGMENTED_SHARE = 0.05
"""split_packets devices write this share of their frames in 2-3 TCP pieces, 1 ms apart."""
_HISTORY_CNS = {"2051": "minute", "2061": "hour", "2031": "day"}
_JUNK = (
    b"#ttp://www.cmsoft.cn/log?id=",
    b"AT+CSQ\r\n",
    b"\x01\x03\x00\x00\x00\x0a\xc5\xcd",
    b"\x00\x00\x00\x00\x00\x06\x01\x03\x00\x00\x00\x02",
    b"+++",
    b"HEARTBEAT\r\n",
    b"\xff\xfe\xfd",
)


@dataclass
class DeviceSettings:
    """How simulated devices report and talk (simulated seconds unless marked wall)."""

    rtd_interval_s: int | None = None
    """Real-time interval (2011); None: the device's `rtd_interval_s` from the registry, else 60."""
    minute_interval_min: int = 10
    """Minute-data (2051) interval, one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30."""
    sample_s: int = 15
    """Meter sampling step; statistics (Avg/Min/Max) are over these samples."""
    realtime: bool = True
    minute_data: bool = True
    hour_data: bool = True
    day_data: bool = True
    ack_timeout_s: float = 10.0
    """Wall seconds to wait for a 9014 before re-sending (HJ 212 OverTime)."""
    recount: int = 3
    """Re-sends before the link counts as dead and is reopened (HJ 212 ReCount)."""
    window: int = 8
    """Uploads in flight without an answer; more wait in the queue."""
    max_segment_size: int = 1024
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    backoff_jitter: float = 0.5
    """Each reconnect delay is the exponential value times a factor in [1 - jitter, 1]."""
    connect_timeout_s: float = 10.0
    history_minute_s: float = 2 * 86400.0
    history_hour_s: float = 31 * 86400.0
    history_day_s: float = 400 * 86400.0
    drift_limit_s: float = 60.0
    """A drifting clock asks for calibration (1013) when this far off, at most hourly."""
    max_clock_step_s: float = 86400.0
    """A 1012 that moves the clock further than this is refused (ExeRtn 3): the platform's
    wall clock is far from the simulated time (accelerated or past-dated runs)."""
    idle: bool = False
    """Connect and hold: no timeline; answer commands only."""
    idle_hello: bool = True
    """In idle mode, send one real-time upload after connecting (binds the session's MN)."""
    report_on_connect: bool = False
    """Send the current real-time values (2011, DataTime = the device clock's second) right
    after each (re)connection, as many loggers do, rather than waiting for the next
    real-time interval: a platform sees the device at once (standalone mode uses it)."""
    timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        if self.minute_interval_min not in MIN_INTERVALS:
            raise ValueError(f"minute_interval_min must be one of {MIN_INTERVALS}")
        if self.sample_s <= 0 or 3600 % self.sample_s:
            raise ValueError("sample_s must divide 3600")
        if self.rtd_interval_s is not None and not 1 <= self.rtd_interval_s <= 3600:
            raise ValueError("rtd_interval_s must be within 1..3600")


class DeviceHost(Protocol):
    """What a device reads from the fleet that runs it (`simulator.Simulator`): the shared
    clock, models and logs, and where to connect. The device needs nothing more."""

    host: str
    port: int
    seed: int
    settings: DeviceSettings
    clock: SimClock
    local: LocalTime
    model: LoadModel
    plan: FaultPlan
    orders: OrderBook | None
    log: SentLog
    finishing: bool

    async def connect_permit(self) -> None:
        """Wait for the fleet's pacing of new connections."""


class SimDevice:
    """One data logger of the fleet."""

    __slots__ = (
        "_ack_timer",
        "_command_tasks",
        "_keys",
        "_offline_until",
        "_tasks",
        "acc_day",
        "acc_hour",
        "acc_minute",
        "ack_timeout",
        "calibration_pending",
        "crc_mode",
        "cursor",
        "energy",
        "faults",
        "first_local",
        "garbage",
        "history",
        "last_calibration_request",
        "link",
        "log",
        "lowercase_crc",
        "minute_interval",
        "mn",
        "offset0",
        "online",
        "pending",
        "pw",
        "qn_last_ms",
        "rate",
        "reached",
        "recount",
        "reset_done",
        "rng",
        "room",
        "rtd_enabled",
        "rtd_interval",
        "segment_size",
        "settings",
        "sim",
        "spec",
        "split",
        "st",
        "stopping",
        "t_ref",
        "timeline_done",
        "unacked",
        "urgent",
        "version",
        "version_bits",
    )

    def __init__(self, sim: DeviceHost, spec: DeviceSpec) -> None:
        self.sim = sim
        self.spec = spec
        self.settings = sim.settings
        self.mn = spec.mn
        self.log = sim.log.device(spec.mn, spec.enterprise_id)
        plan = sim.plan
        self.faults = plan.kinds_of(spec.mn)
        self.rng = Stream(key_of(sim.seed, "device", spec.mn))
        # protocol identity
        self.version = spec.protocol_version
        if FaultKind.FRAMES_2005 in self.faults:
            self.version = "2005"
        self.st = "44" if self.version == "2025" else "31"
        self.version_bits = {"2005": 0, "2017": 4, "2025": 8}[self.version]
        self.pw = spec.password
        if FaultKind.WRONG_PASSWORD in self.faults:
            self.pw = plan.wrong_password(spec.mn, spec.password)
        self.crc_mode = spec.crc_variant
        if FaultKind.MODBUS_CRC in self.faults:
            self.crc_mode = plan.modbus_variant(spec.mn)  # type: ignore[assignment]
        self.lowercase_crc = FaultKind.LOWERCASE_CRC in self.faults
        self.garbage = FaultKind.GARBAGE in self.faults
        self.split = FaultKind.SPLIT_PACKETS in self.faults
        self.segment_size = (
            min(plan.config.split_segment_size, self.settings.max_segment_size)
            if self.split
            else self.settings.max_segment_size
        )
        # clock: device clock = true time + offset0 + rate * (t - t_ref) / 3600
        self.offset0 = 0.0
        self.rate = 0.0
        self.t_ref = sim.clock.start
        if FaultKind.CLOCK_DRIFT in self.faults:
            self.offset0, self.rate = plan.clock_drift(spec.mn)
        self.last_calibration_request = -math.inf
        # reporting state
        self.rtd_interval = self.settings.rtd_interval_s or spec.rtd_interval_s or 60
        self.minute_interval = self.settings.minute_interval_min * 60
        self.rtd_enabled = self.settings.realtime
        self.ack_timeout = self.settings.ack_timeout_s
        self.recount = self.settings.recount
        self.cursor = sim.clock.start
        self.energy: dict[str, float] = {}
        self.reset_done: set[str] = set()
        self.acc_minute: dict[str, Acc] = {}
        self.acc_hour: dict[str, Acc] = {}
        self.acc_day: dict[str, Acc] = {}
        self.first_local: float | None = None
        self.reached: float | None = None
        self.calibration_pending = False
        self.history: dict[str, deque[tuple[float, str, tuple[str, ...]]]] = {}
        self._keys = {p.id: circuit_keys(p.circuit) for p in spec.points}
        # sending state
        self.pending: deque[Outgoing] = deque()
        self.urgent: deque[Outgoing] = deque()
        self.unacked: dict[str, Outgoing] = {}
        self.link: Link | None = None
        self.qn_last_ms = 0
        self.online = Flag(True)
        self.room = Flag(True)
        self.timeline_done = Flag(False)
        self.stopping = False
        self._ack_timer: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._command_tasks: set[asyncio.Task[None]] = set()
        self._offline_until: float | None = None

    # ------------------------------------------------------------------------- lifecycle

    def start(self, end: float) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._connection_loop(), name=f"link-{self.mn}"))
        if self.settings.idle:
            self.timeline_done.set()
        else:
            self._tasks.append(loop.create_task(self._timeline(end), name=f"timeline-{self.mn}"))

    def update_spec(self, spec: DeviceSpec) -> None:
        """The archive changed (points added, moved, re-rated): measure the new points."""
        self.spec = spec
        self._keys = {p.id: circuit_keys(p.circuit) for p in spec.points}
        current = set(self._keys)
        for accs in (self.acc_minute, self.acc_hour, self.acc_day):
            for point_id in list(accs):
                if point_id not in current:
                    del accs[point_id]
        self.first_local = None  # the intervals in progress are incomplete now

    @property
    def drained(self) -> bool:
        return not (self.pending or self.urgent or self.unacked)

    async def stop(self) -> None:
        self.stopping = True
        if self._ack_timer is not None:
            self._ack_timer.cancel()
        for task in [*self._tasks, *self._command_tasks]:
            task.cancel()
        for task in [*self._tasks, *self._command_tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        link, self.link = self.link, None
        if link is not None:
            link.close()
            if not link.lost.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(link.lost), 1.0)

    # --------------------------------------------------------------------------- clocks

    def now(self) -> float:
        """True simulated time for this device (its own cursor in fast mode)."""
        clock = self.sim.clock
        return self.cursor if clock.is_fast else clock.now()

    def device_clock(self, t: float) -> float:
        return t + self.offset0 + self.rate * (t - self.t_ref) / 3600.0

    def true_time(self, device_t: float) -> float:
        factor = 1.0 + self.rate / 3600.0
        return (device_t - self.offset0 + self.rate * self.t_ref / 3600.0) / factor

    def _new_qn(self, t: float) -> tuple[str, int]:
        ms = max(self.qn_last_ms + 1, int(self.device_clock(t) * 1000))
        self.qn_last_ms = ms
        return self.sim.local.fmt17(ms), ms

    # ------------------------------------------------------------------------- timeline

    async def _timeline(self, end: float) -> None:
        clock = self.sim.clock
        fast = clock.is_fast
        try:
            step = math.gcd(self.settings.sample_s, self.rtd_interval)
            tick: float = math.ceil(self.device_clock(clock.start) / step) * step
            spins = 0
            while not self.stopping:
                t = self.true_time(tick)
                if t > end:  # inclusive: intervals that end at `end` are reported
                    self.reached = end
                    break
                if fast:
                    spins += 1
                    if not self.room.is_set() and self._offline_until is None:
                        await self.room.wait()  # offline, the queue cannot drain: go on
                    elif spins % 64 == 0:
                        await asyncio.sleep(0)
                else:
                    await clock.sleep_until(t)
                self.cursor = t
                self._on_tick(tick, t, step)
                step = math.gcd(self.settings.sample_s, self.rtd_interval)
                tick = self._next_tick(tick, step)
        finally:
            if self._offline_until is not None:
                self._offline_until = None
                self.online.set()
            self.timeline_done.set()

    def _next_tick(self, tick: float, step: int) -> float:
        clock_now = self.device_clock(self.cursor)
        following = tick + step
        if clock_now > following + step:  # the clock was set forward: skip ahead
            following = math.ceil(clock_now / step) * step
        elif following % step:
            following = math.ceil(following / step) * step
        return following

    def _on_tick(self, tick: float, t: float, step: int) -> None:
        sim = self.sim
        model = sim.model
        local = tick + sim.local.offset(t)
        if self.first_local is None:
            self.first_local = local
        self._check_offline(t)
        self._check_drift(t)
        points = self.spec.points
        samples = [model.sample(p, t) for p in points]
        energy = self.energy
        for point in points:
            if point.id not in energy:
                energy[point.id] = self._initial_energy(point, t)
            reset_at = sim.plan.meter_reset_at(point.id)
            if reset_at is not None and reset_at <= t and point.id not in self.reset_done:
                self.reset_done.add(point.id)
                energy[point.id] = 0.0
        data_time = sim.local.fmt14(tick)
        if self.rtd_enabled and local % self.rtd_interval == 0:
            self._realtime(t, data_time, samples)
        if local % self.minute_interval == 0:
            self._close_interval(t, local)
        for point, sample in zip(points, samples, strict=True):
            acc = self.acc_minute.get(point.id)
            if acc is None:
                acc = self.acc_minute[point.id] = Acc()
            acc.add(sample, energy[point.id])
            energy[point.id] += sample.power * step / 3600.0

    def _initial_energy(self, point: PointSpec, t: float) -> float:
        """A counter that grows with calendar time, so restarts never run it backwards (in
        secondary kWh, like the power it integrates: see `LoadModel.sample`)."""
        rated = self.sim.model.rated_of(point)
        hours = max(0.0, (t - 1_577_836_800.0) / 3600.0)  # since 2020-01-01
        base = 1000.0 + (key_of(self.sim.seed, "e0", point.id) % 100_000)
        return (base + rated * 0.35 * hours) / (point.ct_ratio * point.pt_ratio)

    def _check_offline(self, t: float) -> None:
        plan = self.sim.plan
        orders = self.sim.orders
        if FaultKind.OFFLINE not in self.faults and orders is None:
            return
        if self._offline_until is not None:
            if t >= self._offline_until:
                self._offline_until = None
                self.online.set()
            return
        window = (
            plan.offline_at(self.mn, t, self.sim.model)
            if FaultKind.OFFLINE in self.faults
            else None
        )
        if window is None and orders is not None:
            # An enterprise that goes offline during a control order (`orders.py`).
            window = orders.offline_at(self.spec.enterprise_id, t)
        if window is not None:
            self._offline_until = window[1]
            self.online.clear()
            if self.link is not None:
                self.link.close()

    def _check_drift(self, t: float) -> None:
        if self.rate == 0.0 and self.offset0 == 0.0:
            return
        offset = self.device_clock(t) - t
        if abs(offset) > self.settings.drift_limit_s and t - self.last_calibration_request >= 3600:
            self.last_calibration_request = t
            self.request_calibration(t)

    def _close_interval(self, t: float, local: float) -> None:
        """At a minute-interval boundary: emit 2051 (and 2061/2031 at hour/day ends).

        Minute statistics roll up into the hour's, hour statistics into the day's; every
        minute interval divides the hour, so an hour end is also a minute-interval end.
        """
        settings = self.settings
        offset = self.sim.local.offset(t)
        levels = (
            ("2051", self.minute_interval, self.acc_minute, self.acc_hour, settings.minute_data),
            ("2061", 3600, self.acc_hour, self.acc_day, settings.hour_data),
            ("2031", 86400, self.acc_day, None, settings.day_data),
        )
        for cn, length, accs, parent, send in levels:
            if local % length:
                return
            label_local = local - length
            complete = self.first_local is not None and label_local >= self.first_local
            groups: list[str] = []
            for point in self.spec.points:
                acc = accs.pop(point.id, None)
                if acc is None:
                    continue
                if parent is not None:
                    parent.setdefault(point.id, Acc()).merge(acc)
                if complete and acc.n:
                    groups.extend(self._acc_groups(point, acc))
            if groups:
                self._emit_history(cn, t, label_local - offset, tuple(groups), send)

    def _acc_groups(self, point: PointSpec, acc: Acc) -> list[str]:
        """Code groups of one circuit's interval statistics."""
        return interval_groups(self._keys[point.id], acc, self.energy[point.id])

    def _emit_history(
        self, cn: str, t: float, label_utc: float, groups: tuple[str, ...], send: bool
    ) -> None:
        data_time = self.sim.local.fmt14(label_utc)
        history = self.history.get(cn)
        if history is None:
            history = self.history[cn] = deque()
        history.append((label_utc, data_time, groups))
        keep = {
            "2051": self.settings.history_minute_s,
            "2061": self.settings.history_hour_s,
            "2031": self.settings.history_day_s,
        }[cn]
        while history and history[0][0] < label_utc - keep:
            history.popleft()
        if send and self._offline_until is None:
            self.enqueue_upload(cn, data_time, groups, _HISTORY_CNS[cn], t)

    def _realtime(self, t: float, data_time: str, samples: list[Sample]) -> None:
        if self._offline_until is not None:
            return
        self.enqueue_upload("2011", data_time, self.realtime_groups(samples), "realtime", t)

    def realtime_groups(self, samples: list[Sample]) -> tuple[str, ...]:
        """Code groups of a real-time upload: power, counter, PF, switch, currents, voltages."""
        groups: list[str] = []
        energy = self.energy
        for point, s in zip(self.spec.points, samples, strict=True):
            k = self._keys[point.id]
            e = energy.get(point.id)
            if e is None:
                e = energy[point.id] = self._initial_energy(point, self.now())
            groups.extend(sample_groups(k, s, e))
        return tuple(groups)

    # -------------------------------------------------------------------------- encoding

    def _finish(self, frame: bytes) -> bytes:
        """Apply the device's CRC habit (MODBUS variant, lower case) to an encoded frame."""
        if self.crc_mode == "standard" and not self.lowercase_crc:
            return frame
        crc = frame[-6:-2]
        if self.crc_mode != "standard":
            value = hj212.modbus_crc(frame[6:-6])
            if self.crc_mode == "modbus_lo_hi":
                value = swap_bytes(value)
            crc = b"%04X" % value
        if self.lowercase_crc:
            crc = crc.lower()
        return frame[:-6] + crc + frame[-2:]

    def encode_upload(
        self, cn: str, data_time: str, groups: tuple[str, ...], t: float
    ) -> list[tuple[bytes, str | None]]:
        """Encode an upload (split into PNUM/PNO parts when too long): [(bytes, QN)]."""
        common = f"DataTime={data_time}"
        if self.version == "2005":
            head = wire.header(cn, self.st, self.pw, self.mn, qn=None, flag=None)
            parts = wire.pack_groups(head, common, groups, self.segment_size)
            if len(parts) == 1:
                return [(self._finish(wire.frame_bytes(head, common, parts[0])), None)]
            return [
                (
                    self._finish(
                        wire.frame_bytes(
                            wire.header(
                                cn,
                                self.st,
                                self.pw,
                                self.mn,
                                qn=None,
                                flag=2,
                                pnum=len(parts),
                                pno=i + 1,
                            ),
                            common,
                            part,
                        )
                    ),
                    None,
                )
                for i, part in enumerate(parts)
            ]
        qn, ms = self._new_qn(t)
        flag = self.version_bits | 1
        head = wire.header(cn, self.st, self.pw, self.mn, qn=qn, flag=flag)
        parts = wire.pack_groups(head, common, groups, self.segment_size)
        if len(parts) == 1:
            return [(self._finish(wire.frame_bytes(head, common, parts[0])), qn)]
        self.qn_last_ms = ms + len(parts) - 1
        out: list[tuple[bytes, str | None]] = []
        for i, part in enumerate(parts):
            part_qn = qn if i == 0 else self.sim.local.fmt17(ms + i)
            part_head = wire.header(
                cn,
                self.st,
                self.pw,
                self.mn,
                qn=part_qn,
                flag=flag | 2,
                pnum=len(parts),
                pno=i + 1,
            )
            out.append((self._finish(wire.frame_bytes(part_head, common, part)), part_qn))
        return out

    def enqueue_upload(
        self,
        cn: str,
        data_time: str,
        groups: tuple[str, ...],
        kind: str,
        t: float,
        *,
        urgent: bool = False,
    ) -> list[Outgoing]:
        out: list[Outgoing] = []
        for data, qn in self.encode_upload(cn, data_time, groups, t):
            item = Outgoing(data, cn, kind, qn, needs_ack=qn is not None, data_time=data_time)
            out.append(item)
            (self.urgent if urgent else self.pending).append(item)
        if len(self.pending) + len(self.urgent) >= 2 * self.settings.window + 8:
            self.room.clear()
        self.pump()
        return out

    def send_now(self, message: hj212.Message, kind: str = "answer") -> None:
        """Write a frame that expects no answer (9011/9012/9013, 1011/1061 replies) at once."""
        data = self._finish(hj212.encode(message, max_segment_size=8192))
        link = self.link
        if link is None or link.transport is None:
            return
        link.write(data)
        self.log.sent(message.cn, kind, message.qn, len(data), ack=False, data_time=None)

    # --------------------------------------------------------------------------- sending

    def pump(self) -> None:
        link = self.link
        if link is None or link.transport is None or link.paused:
            return
        window = self.settings.window
        while self.urgent or self.pending:
            queue = self.urgent if self.urgent else self.pending
            if queue[0].needs_ack and len(self.unacked) >= window:
                break
            self._transmit(queue.popleft(), link)
        if (
            not self.room.is_set()
            and len(self.pending) + len(self.urgent) < self.settings.window + 4
        ):
            self.room.set()

    def _transmit(self, out: Outgoing, link: Link) -> None:
        data = out.data
        if self.garbage and self.rng.random() < self.sim.plan.config.garbage_probability:
            junk = self._junk()
            link.write(junk)
            self.log.garbage_bytes += len(junk)
        pieces = 1
        if self.split and self.rng.random() < _FRAGMENTED_SHARE:
            pieces = self.rng.randint(2, 3)
        link.write(data, pieces=pieces)
        first = out.attempts == 0
        out.attempts += 1
        out.link_attempts += 1
        if first:
            self.log.sent(
                out.cn, out.kind, out.qn, len(data), ack=out.needs_ack, data_time=out.data_time
            )
        else:
            self.log.resent(len(data))
        if out.needs_ack and out.qn is not None:
            out.sent_at = asyncio.get_running_loop().time()
            self.unacked.pop(out.qn, None)
            self.unacked[out.qn] = out
            self._arm_ack_timer()
        elif out.done is not None and not out.done.done():
            out.done.set_result(None)

    def _junk(self) -> bytes:
        parts = [self.rng.choice(_JUNK)]
        if self.rng.random() < 0.5:
            parts.append(
                bytes(self.rng.randint(0x20, 0x7E) for _ in range(self.rng.randint(3, 40))).replace(
                    b"#", b"*"
                )
            )
        return b"".join(parts)

    def _arm_ack_timer(self) -> None:
        if self._ack_timer is not None or not self.unacked:
            return
        oldest = next(iter(self.unacked.values()))
        loop = asyncio.get_running_loop()
        delay = max(0.0, oldest.sent_at + self.ack_timeout - loop.time())
        self._ack_timer = loop.call_later(delay, self._check_acks)

    def _check_acks(self) -> None:
        self._ack_timer = None
        link = self.link
        if link is None or link.transport is None or self.stopping:
            return
        now = asyncio.get_running_loop().time()
        overdue = [o for o in self.unacked.values() if now - o.sent_at >= self.ack_timeout - 1e-3]
        if any(o.link_attempts > self.recount for o in overdue):
            _logger.info("%s: no answer after %d resends, reconnecting", self.mn, self.recount)
            link.close()
            return
        for out in overdue:
            self._transmit(out, link)
        self._arm_ack_timer()

    def _on_connected(self, link: Link) -> None:
        self.link = link
        resend = list(self.unacked.values())
        for out in resend:
            out.link_attempts = 0
            self._transmit(out, link)
        if self.settings.idle and self.settings.idle_hello:
            t = self.now()
            samples = [self.sim.model.sample(p, t) for p in self.spec.points]
            data_time = self.sim.local.fmt14(t - t % 60)
            self.enqueue_upload("2011", data_time, self.realtime_groups(samples), "realtime", t)
        elif self.settings.report_on_connect and self.rtd_enabled and not self.settings.idle:
            t = self.now()
            samples = [self.sim.model.sample(p, t) for p in self.spec.points]
            data_time = self.sim.local.fmt14(math.floor(self.device_clock(t)))
            self.enqueue_upload("2011", data_time, self.realtime_groups(samples), "realtime", t)
        if FaultKind.CLOCK_DRIFT in self.faults and not self.calibration_pending:
            t = self.now()
            if abs(self.device_clock(t) - t) > self.settings.drift_limit_s:
                self.last_calibration_request = t
                self.request_calibration(t)
        self.pump()

    def request_calibration(self, t: float) -> None:
        """1013: ask the platform to set this device's clock (answered 9013, then 1012)."""
        if self.version == "2005" or self.calibration_pending:
            return
        self.calibration_pending = True
        qn, _ = self._new_qn(t)
        message = hj212.Message(
            cn="1013", qn=qn, st=self.st, pw=self.pw, mn=self.mn, flag=self.version_bits | 1
        )
        data = self._finish(hj212.encode(message))
        self.urgent.append(Outgoing(data, "1013", "calibration", qn, needs_ack=True))
        self.pump()

    # ------------------------------------------------------------------------ connection

    async def _connection_loop(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self.settings
        failures = 0
        while not self.stopping:
            if not self.online.is_set():
                await self.online.wait()
                continue
            if self.sim.finishing and self.timeline_done.is_set() and self.drained:
                return  # the run is over and everything was answered: do not reconnect
            await self.sim.connect_permit()
            try:
                _, link = await asyncio.wait_for(
                    loop.create_connection(lambda: Link(self), self.sim.host, self.sim.port),
                    settings.connect_timeout_s,
                )
            except (OSError, TimeoutError) as exc:
                self.log.connect_failures += 1
                delay = self._backoff(failures)
                failures += 1
                _logger.debug("%s: connect failed (%s), retrying in %.2fs", self.mn, exc, delay)
                self.log.backoff(delay)
                await asyncio.sleep(delay)
                continue
            self.log.connects += 1
            self._on_connected(link)
            if not self.online.is_set():  # an offline window began meanwhile
                link.close()
            await asyncio.shield(link.lost)  # cancelling this task must not cancel `lost`
            self.link = None
            self.log.disconnects += 1
            if self._ack_timer is not None:
                self._ack_timer.cancel()
                self._ack_timer = None
            if self._stopped():
                return
            if link.acked_any or not self.online.is_set():
                failures = 0
            delay = self._backoff(failures)
            failures += 1
            if not self.online.is_set():
                continue
            self.log.backoff(delay)
            await asyncio.sleep(delay)

    def _stopped(self) -> bool:
        return self.stopping

    def _backoff(self, failures: int) -> float:
        s = self.settings
        delay = min(s.backoff_max_s, s.backoff_base_s * (2.0**failures))
        return delay * (1.0 - s.backoff_jitter * self.rng.random())

    # ----------------------------------------------------------------------- from server

    def on_frame(self, raw: bytes, link: Link) -> None:
        try:
            frame = hj212.decode(raw)
        except hj212.DecodeError:
            return
        cn = frame.cn
        if cn in ("9014", "9013"):
            if frame.qn is None and frame.params.get("QN"):
                frame.qn = frame.params["QN"]
            self._on_answer(frame, link)
            return
        if cn is None or frame.qn is None:
            return
        if cn in ("9011", "9012"):
            # the platform's answer to one of our uploads: a refusal (a strict platform
            # answers an unknown MN with QnRtn 4, a wrong PW with 3). Not a command: never
            # answered. The upload stays unanswered and is sent again, as a logger would.
            if frame.qn in self.unacked:
                code = frame.params.get("QnRtn") or frame.params.get("ExeRtn") or "?"
                self.log.refused[code] += 1
            return
        if not frame.ok:
            if frame.verification.length.ok:
                self.send_now(commands.request_answer(frame, 9))
            return
        if frame.mn != self.mn:
            self.send_now(commands.request_answer(frame, 4))
            return
        if frame.pw != self.pw:
            self.send_now(commands.request_answer(frame, 3))
            return
        task = asyncio.get_running_loop().create_task(self._command(frame))
        self._command_tasks.add(task)
        task.add_done_callback(self._command_tasks.discard)

    def _on_answer(self, frame: hj212.Frame, link: Link) -> None:
        qn = frame.qn
        if qn is None:
            return
        out = self.unacked.pop(qn, None)
        if out is None:
            if self.log.keep_qns and qn in self.log.acked:
                self.log.duplicate_acks += 1
            else:
                self.log.unexpected_acks += 1
            return
        link.acked_any = True
        self.log.ack(qn)
        self.sim.log.latency.add(asyncio.get_running_loop().time() - out.sent_at)
        if out.cn == "1013":
            self.calibration_pending = False
        if out.done is not None and not out.done.done():
            out.done.set_result(None)
        if not self.unacked and self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        self.pump()

    def _reply(self, frame: hj212.Frame, cn: str, cp: tuple[tuple[str, str], ...]) -> None:
        """A data reply to a request (1011, 1061, 1063): same QN, no answer expected."""
        message = hj212.Message(
            cn=cn, qn=frame.qn, st=self.st, pw=self.pw, mn=self.mn, flag=self.version_bits, cp=cp
        )
        self.send_now(message, kind="reply")

    async def _command(self, frame: hj212.Frame) -> None:
        cn = frame.cn or ""
        params = frame.params
        ok = commands.request_answer(frame, 1)
        if cn == "2012" or cn == "2022":
            if cn == "2012":
                self.rtd_enabled = False
            self.send_now(commands.notification_answer(frame))
            return
        if cn in _HISTORY_CNS and ("BeginTime" in params or "EndTime" in params):
            await self._backfill(frame)
            return
        handlers: dict[str, Callable[[], int]] = {
            "1000": lambda: self._set_timeouts(params),
            "1011": lambda: self._get_time(frame),
            "1012": lambda: self._set_time(params),
            "1061": lambda: self._reply_value(frame, "1061", "RtdInterval", str(self.rtd_interval)),
            "1062": lambda: self._set_rtd(params),
            "1063": lambda: self._reply_value(
                frame, "1063", "MinInterval", str(self.minute_interval // 60)
            ),
            "1064": lambda: self._set_min(params),
            "2011": lambda: self._start_realtime(),
            "2021": lambda: 1,
        }
        handler = handlers.get(cn)
        if handler is None:
            self.send_now(commands.request_answer(frame, 8))
            return
        self.send_now(ok)
        self.send_now(commands.execution_answer(frame, handler()))

    def _set_timeouts(self, params: dict[str, str]) -> int:
        try:
            over, count = int(params.get("OverTime", "")), int(params.get("ReCount", ""))
        except ValueError:
            return 3
        if not (0 < over <= 99 and 0 < count <= 99):
            return 3
        self.ack_timeout, self.recount = float(over), count
        return 1

    def _get_time(self, frame: hj212.Frame) -> int:
        t = self.now()
        self._reply(frame, "1011", (("SystemTime", self.sim.local.fmt14(self.device_clock(t))),))
        return 1

    def _set_time(self, params: dict[str, str]) -> int:
        target = self.sim.local.parse(params.get("SystemTime", ""))
        if target is None:
            return 3
        t = self.now()
        if abs(target - t) > self.settings.max_clock_step_s:
            return 3
        self.offset0 = target - t
        self.t_ref = t
        return 1

    def _reply_value(self, frame: hj212.Frame, cn: str, key: str, value: str) -> int:
        self._reply(frame, cn, ((key, value),))
        return 1

    def _set_rtd(self, params: dict[str, str]) -> int:
        try:
            value = int(params.get("RtdInterval", ""))
        except ValueError:
            return 3
        if not 30 <= value <= 3600:
            return 3
        self.rtd_interval = value
        return 1

    def _set_min(self, params: dict[str, str]) -> int:
        try:
            value = int(params.get("MinInterval", ""))
        except ValueError:
            return 3
        if value not in MIN_INTERVALS:
            return 3
        self.minute_interval = value * 60
        return 1

    def _start_realtime(self) -> int:
        self.rtd_enabled = True
        return 1

    async def _backfill(self, frame: hj212.Frame) -> None:
        """History request: 9011, one upload per stored record (each answered), then 9012."""
        cn = frame.cn or ""
        local = self.sim.local
        begin = local.parse(frame.params.get("BeginTime", ""))
        end = local.parse(frame.params.get("EndTime", ""))
        self.send_now(commands.request_answer(frame, 1))
        if begin is None or end is None or end < begin:
            self.send_now(commands.execution_answer(frame, 3))
            return
        records = [r for r in self.history.get(cn, ()) if begin <= r[0] <= end]
        if not records:
            self.send_now(commands.execution_answer(frame, 100))
            return
        loop = asyncio.get_running_loop()
        for _, data_time, groups in records:
            parts = self.enqueue_upload(cn, data_time, groups, "backfill", self.now(), urgent=True)
            for part in parts:
                part.done = loop.create_future()
            self.pump()
            for part in parts:
                if part.done is not None:
                    await part.done
        self.send_now(commands.execution_answer(frame, 1))
