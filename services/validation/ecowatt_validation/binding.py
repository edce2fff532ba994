"""Binding: `telemetry.readings` → `telemetry.points`, with per-point state and daily aggregates.

One handler call gets one partition's records (keyed by MN, so all readings of a device, in
order). For each reading the device's electricity profile resolves every `code-suffix` to a
quantity, circuit, phase and aggregate; the registry's points of that device give the point of
each circuit; CT/PT ratios scale the values. Per point the binder keeps, in memory and in
`point_state` / `point_daily`:

* the energy counter chain: ΔE between consecutive counter readings, roll-overs unwrapped,
  resets and backward steps flagged and excluded (never a huge delta);
* a bitmap of the day's sample slots (`expected_interval_s`): a reading whose slot is taken is
  a duplicate and changes nothing — at-least-once delivery never double-counts;
* power max/min/sum, valid and total samples, hourly energy, negative-power runs, constant-
  value runs, latency grades: the inputs of the daily rules.

Order of effects for a batch: publish the `PointReading`s (at least once), then one database
transaction writes the state, the aggregates, unbound counts and any streaming findings with
their outbox events; then the bus commits the offsets. The state row carries a revision; if
another consumer wrote it meanwhile (a rebalance), the cache is dropped and the batch retried
from the database, so a redelivered batch is harmless.

Why one module of ~1,300 lines: it is one hot loop (every reading of the platform passes
through `process`), and its pieces — binding plans, the counter chain, the day aggregates,
the staged writes, the byte-for-byte `telemetry.points` envelopes — are tuned together
(`make bench-validation`); a split along them (plan, state, writes, envelopes) should keep
the per-reading path free of indirection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import weakref
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import ecowatt_hj212 as hj212
from ecowatt_kernel.bus import Bus, Message, Record, TransientError
from ecowatt_kernel.bus.types import Headers
from ecowatt_kernel.contracts import ContractError, PointReading, TelemetryReading, decode
from ecowatt_kernel.contracts.envelope import TYPE_HEADER, VERSION_HEADER
from ecowatt_kernel.contracts.registry import PointSnapshot
from ecowatt_kernel.db import Database
from ecowatt_kernel.ids import new_uuid_text
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.tracing import TRACE_HEADER, current_trace_id, new_trace_id
from prometheus_client import Counter
from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_validation import rules as R
from ecowatt_validation.findings import FindingStore, Hit

_logger = logging.getLogger(__name__)

READINGS = Counter(
    "ecowatt_validation_readings_total", "Readings handled by the binder, by outcome.", ["outcome"]
)
UNBOUND_VALUES = Counter(
    "ecowatt_validation_unbound_total", "Readings or values not bound to a point.", ["reason"]
)

INTERVALS = {"2011": "realtime", "2051": "minute", "2061": "hour", "2031": "day"}
INVALIDATING = frozenset(
    {"negative_power", "constant_value", "counter_reset", "counter_backwards", "negative_energy"}
)
CONSTANT_KEYS = ("active_power_kw", "current_a:A", "current_a:B", "current_a:C")
HOURS = 24
_EPSILON = 1e-9  # values are decimal text: 99.99 - 100.0 must be -0.01, not a hair below


class StateConflict(TransientError):
    """Another consumer changed a point's state since this one cached it."""


def latency_grade(seconds: float, bounds_h: Sequence[float]) -> int:
    """1 (≤ first bound) … len(bounds)+1 (beyond the last)."""
    hours = seconds / 3600.0
    for index, bound in enumerate(bounds_h, start=1):
        if hours <= bound:
            return index
    return len(bounds_h) + 1


_POWERS = tuple(10.0**-digits for digits in range(32))


def _resolution(text: str) -> float:
    """The step of a decimal text: 10^-(digits after the point)."""
    text = text.strip()
    dot = text.find(".")
    digits = len(text) - dot - 1 if dot >= 0 else 0
    return _POWERS[digits] if digits < len(_POWERS) else 10.0**-digits


@dataclass
class DayAgg:
    point_id: str
    day: date
    enterprise_id: str
    mn: str
    interval_s: int
    energy_kwh: float = 0.0
    reported_kwh: float = 0.0
    deltas: int = 0
    p_max: float | None = None
    p_min: float | None = None
    p_sum: float = 0.0
    p_n: int = 0
    samples: int = 0
    valid_samples: int = 0
    slots: bytearray = field(default_factory=bytearray)
    valid_slots: bytearray = field(default_factory=bytearray)
    hourly_kwh: list[float] = field(default_factory=lambda: [0.0] * HOURS)
    neg_energy_events: int = 0
    resets: int = 0
    rollovers: int = 0
    neg_power_samples: int = 0
    neg_power_run_max: int = 0
    const_max_h: float = 0.0
    latency_max_s: float = 0.0
    latency_grades: list[int] = field(default_factory=lambda: [0] * 5)
    first_time: datetime | None = None
    last_time: datetime | None = None
    dirty: bool = False

    def __post_init__(self) -> None:
        size = (86400 // max(self.interval_s, 1) + 8) // 8
        if len(self.slots) < size:
            self.slots.extend(bytes(size - len(self.slots)))
        if len(self.valid_slots) < size:
            self.valid_slots.extend(bytes(size - len(self.valid_slots)))

    def slot_taken(self, slot: int) -> bool:
        return bool(self.slots[slot >> 3] & (1 << (slot & 7)))

    def take(self, slot: int, valid: bool) -> None:
        self.slots[slot >> 3] |= 1 << (slot & 7)
        if valid:
            self.valid_slots[slot >> 3] |= 1 << (slot & 7)


@dataclass
class PointState:
    point_id: str
    enterprise_id: str
    mn: str
    counter_kwh: float | None = None
    counter_time: datetime | None = None
    last_time: datetime | None = None
    last_valid_time: datetime | None = None
    last_received_at: datetime | None = None
    neg_run: int = 0
    runs: dict[str, Any] = field(default_factory=dict)
    rev: int = 0
    days: dict[date, DayAgg] = field(default_factory=dict)
    dirty: bool = False


class _Bound:
    """The values of one point in one reading."""

    __slots__ = ("flag_ok", "point", "point_json", "quality", "raw_counter", "resolution", "values")

    def __init__(self, point: PointSnapshot, point_json: tuple[bytes, bytes, bytes]) -> None:
        self.point = point
        self.point_json = point_json
        self.values: dict[str, float] = {}
        self.quality: dict[str, list[str]] = {}
        self.resolution: dict[str, float] = {}
        self.flag_ok: dict[str, bool] = {}
        self.raw_counter: float | None = None


class _Entry:
    """How one `code-suffix` of a device binds: to a point and value key, or why not."""

    __slots__ = (
        "constant",
        "counter",
        "key",
        "point",
        "point_json",
        "ratio",
        "resolution_ratio",
        "unbound",
    )

    def __init__(
        self,
        point: PointSnapshot | None = None,
        binding: hj212.Binding | None = None,
        unbound: tuple[str, str] | None = None,
    ) -> None:
        self.point = point
        self.unbound = unbound
        self.key = ""
        self.ratio = 1.0
        self.resolution_ratio = 1.0
        self.constant = False
        self.counter = 0  # 1: an instant counter value; 2: a max one (the first of a reading)
        self.point_json = (b"", b"", b"")
        if point is not None and binding is not None:
            self.point_json = _point_json(point)
            quantity = binding.quantity.value
            self.ratio = _ratio(quantity, point)
            self.resolution_ratio = abs(self.ratio)
            key = quantity
            if binding.phase:
                key += ":" + binding.phase
            if binding.aggregate in ("min", "max"):
                key += ":" + binding.aggregate
            self.key = key
            self.constant = key in CONSTANT_KEYS
            if quantity == "energy_total_kwh" and binding.aggregate in ("instant", "max"):
                self.counter = 1 if binding.aggregate == "instant" else 2


class _Plan:
    """A device's binding plan: its profile, points by circuit and the entries seen so far.

    Built from the registry view on the device's first reading and dropped on any device or
    point change, so it always says what `RegistryView` says now.
    """

    __slots__ = ("by_circuit", "entries", "inactive", "outcome", "profile", "totals")

    def __init__(self, outcome: str | None = None) -> None:
        self.outcome = outcome
        self.profile: hj212.Profile | None = None
        self.by_circuit: dict[int, PointSnapshot] = {}
        self.inactive: set[int | None] = set()
        self.totals: list[PointSnapshot] = []
        self.entries: dict[tuple[str, str], _Entry] = {}


class _Params:
    """The parameters of the rules the binder applies, read once per batch."""

    __slots__ = ("constant", "latency", "negative_energy", "negative_power")

    def __init__(self, rules: Callable[[str], R.RuleState]) -> None:
        self.negative_energy = rules(R.NEGATIVE_ENERGY).params
        self.negative_power = rules(R.NEGATIVE_POWER).params
        self.constant = rules(R.CONSTANT_POWER).params
        self.latency = rules(R.DATA_LATENCY).params


@dataclass
class BatchResult:
    messages: list[Message] = field(default_factory=list)  # telemetry.points
    hits: list[Hit] = field(default_factory=list)
    unbound: dict[tuple[str, date, str, str], list[Any]] = field(default_factory=dict)


_Outcome = str | tuple[list[_Bound], list[tuple[str, str]]]
_PLANS_MAX = 100_000  # device plans kept before the cache starts over (unknown MNs add some)


class Binder:
    """The `telemetry.readings` handler and the per-point state it keeps."""

    def __init__(
        self,
        *,
        database: Database,
        bus: Bus,
        view: RegistryView,
        findings: FindingStore,
        rules: Callable[[str], R.RuleState],
        timezone: str,
        valid_flags: frozenset[str] = frozenset({"N"}),
        sample_cns: frozenset[str] = frozenset({"2011"}),
        points_topic: str = "telemetry.points",
        publish_points: bool = True,
        on_committed: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.database = database
        self.bus = bus
        self.view = view
        self.findings = findings
        self.rules = rules
        self.tz = ZoneInfo(timezone)
        self.valid_flags = valid_flags
        self.sample_cns = sample_cns
        self.points_topic = points_topic
        self.publish_points = publish_points
        self.on_committed = on_committed
        self.clock = clock
        self.cache: dict[str, PointState] = {}
        self.fired: set[tuple[str, str, date]] = set()
        self.stats: dict[str, int] = defaultdict(int)
        self._plans: dict[str, _Plan] = {}
        self._staged: weakref.WeakSet[Any] = weakref.WeakSet()  # connections with staging tables
        view.on_change(self._registry_changed)

    def _registry_changed(
        self, entity: str, entity_id: str, old: object | None, new: object | None
    ) -> None:
        if entity in ("device", "point"):
            self._plans.clear()

    # ------------------------------------------------------------------------- the handler

    async def handle(self, records: Sequence[Record]) -> None:
        if not self.view.ready:
            await self.view.wait_ready(timeout_s=600)
        readings: list[TelemetryReading] = []
        for record in records:
            try:
                data = decode(record).data
            except ContractError as exc:
                _logger.error(
                    "undecodable reading %s/%d@%d: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )
                READINGS.labels("undecodable").inc()
                self.stats["undecodable"] += 1
                continue
            if isinstance(data, TelemetryReading):
                readings.append(data)
        if readings:
            await self.process(readings)

    async def process(self, readings: Sequence[TelemetryReading]) -> BatchResult:
        touched: set[str] = set()
        try:
            tz = self.tz
            bound = [(r, self._bind(r), r.data_time.astimezone(tz)) for r in readings]
            await self._load(bound)
            result = BatchResult()
            params = _Params(self.rules)
            trace = current_trace_id()
            trace_json = _trace_json(trace) if trace is not None else None
            sample_cns = self.sample_cns
            for reading, outcome, local in bound:
                if isinstance(outcome, str):
                    self._count_unbound(result, reading, outcome, "", None)
                    continue
                items, unbound = outcome
                for reason, detail in unbound:
                    device = self.view.device(reading.mn)
                    self._count_unbound(
                        result, reading, reason, detail, device.enterprise_id if device else None
                    )
                if not items:
                    continue
                day = local.date()
                seconds = 0
                grade = 0
                latency = 0.0
                if reading.cn in sample_cns:
                    midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
                    seconds = int((local - midnight).total_seconds())
                    if not reading.history:  # back-filled data are late by design: not judged
                        latency = (reading.received_at - reading.data_time).total_seconds()
                        grade = latency_grade(max(latency, 0.0), params.latency["grade_bounds_h"])
                texts = _reading_json(reading)
                for item in items:
                    touched.add(item.point.id)
                    message = self._apply(
                        reading,
                        item,
                        result,
                        local,
                        day,
                        seconds,
                        latency,
                        grade,
                        params,
                        trace,
                        texts,
                        trace_json,
                    )
                    if message is not None:
                        result.messages.append(message)
            publishing = None
            if self.publish_points and result.messages:
                publishing = asyncio.ensure_future(self.bus.publish(result.messages))
            await self._flush(result, touched, publishing)
        except BaseException:
            for point_id in touched:
                self.cache.pop(point_id, None)
            self.fired.clear()
            raise
        READINGS.labels("bound").inc(len(readings))
        if self.on_committed is not None and result.hits:
            self.on_committed()
        return result

    # --------------------------------------------------------------------------- binding

    def _plan(self, mn: str) -> _Plan:
        device = self.view.device(mn)
        if device is None:
            return _Plan("unknown_device")
        if device.status != "active":
            return _Plan("inactive_device")
        try:
            profile = hj212.get_profile(device.electricity_profile)
        except hj212.ProfileError:
            return _Plan("unknown_profile")
        plan = _Plan()
        plan.profile = profile
        points = self.view.points_of_device(mn)
        plan.by_circuit = {p.circuit: p for p in points if p.status == "active"}
        plan.inactive = {p.circuit for p in points if p.status != "active"}
        plan.totals = [p for p in plan.by_circuit.values() if p.point_type == "total"]
        return plan

    def _entry(self, plan: _Plan, code: str, suffix: str) -> _Entry:
        assert plan.profile is not None
        binding = plan.profile.resolve(code, suffix)
        if binding is None:
            return _Entry(unbound=("unknown_code", f"{code}-{suffix}"))
        point = self._point_for(binding.circuit, plan.by_circuit, plan.totals)
        if point is None:
            reason = "inactive_point" if binding.circuit in plan.inactive else "unknown_circuit"
            return _Entry(unbound=(reason, str(binding.circuit)))
        return _Entry(point, binding)

    def _bind(self, reading: TelemetryReading) -> _Outcome:
        plan = self._plans.get(reading.mn)
        if plan is None:
            if len(self._plans) >= _PLANS_MAX:
                self._plans.clear()
            plan = self._plans[reading.mn] = self._plan(reading.mn)
        if plan.outcome is not None:
            return plan.outcome
        entries = plan.entries
        valid_flags = self.valid_flags
        isfinite = math.isfinite
        bound: dict[str, _Bound] = {}
        unbound: list[tuple[str, str]] = []
        for code, group in reading.items.items():
            flag = group.get("Flag")
            upper = flag.upper() if flag is not None else None
            ok = upper is None or upper in valid_flags
            flag_quality = "flag:" + upper if flag and upper and upper != "N" else None
            for suffix, text in group.items():
                if suffix == "Flag":
                    continue
                entry = entries.get((code, suffix))
                if entry is None:
                    entry = entries[(code, suffix)] = self._entry(plan, code, suffix)
                if entry.unbound is not None:
                    unbound.append(entry.unbound)
                    continue
                try:
                    raw = float(text)
                except ValueError:
                    unbound.append(("unparseable", f"{code}-{suffix}"))
                    continue
                if not isfinite(raw):
                    unbound.append(("unparseable", f"{code}-{suffix}"))
                    continue
                point = entry.point
                assert point is not None
                item = bound.get(point.id)
                if item is None:
                    item = bound[point.id] = _Bound(point, entry.point_json)
                key = entry.key
                item.values[key] = raw * entry.ratio
                if entry.constant:  # only the constant-value rule reads resolutions
                    item.resolution[key] = _resolution(text) * entry.resolution_ratio
                item.flag_ok[key] = ok
                if flag_quality is not None:
                    item.quality.setdefault(key, []).append(flag_quality)
                if entry.counter == 1 or (entry.counter == 2 and item.raw_counter is None):
                    item.raw_counter = raw
        return list(bound.values()), sorted(set(unbound)) if unbound else unbound

    @staticmethod
    def _point_for(
        circuit: int | None, by_circuit: dict[int, PointSnapshot], totals: list[PointSnapshot]
    ) -> PointSnapshot | None:
        if circuit is not None and circuit in by_circuit:
            return by_circuit[circuit]
        # Circuit 00 of the default profile is the main incoming meter; points start at 1, so
        # it binds to the device's only total point. Plant-level items (no circuit) bind to
        # the device's only point.
        if circuit == 0 and len(totals) == 1:
            return totals[0]
        if circuit is None and len(by_circuit) == 1:
            return next(iter(by_circuit.values()))
        return None

    def _count_unbound(
        self,
        result: BatchResult,
        reading: TelemetryReading,
        reason: str,
        detail: str,
        enterprise: str | None,
    ) -> None:
        UNBOUND_VALUES.labels(reason).inc()
        self.stats[reason] += 1
        day = reading.data_time.astimezone(self.tz).date()
        key = (reading.mn, day, reason, detail)
        entry = result.unbound.get(key)
        if entry is None:
            result.unbound[key] = [enterprise, 1, reading.received_at]
        else:
            entry[1] += 1
            entry[2] = max(entry[2], reading.received_at)
        if reason == "unknown_circuit" and enterprise:
            fired = (R.UNBOUND_DATA, reading.mn, day)
            if fired not in self.fired and self.rules(R.UNBOUND_DATA).enabled:
                self.fired.add(fired)
                result.hits.append(
                    Hit(
                        R.UNBOUND_DATA,
                        "device",
                        reading.mn,
                        enterprise,
                        day,
                        {
                            "reason": reason,
                            "circuit": detail,
                            "data_time": reading.data_time.isoformat(),
                        },
                    )
                )

    # ------------------------------------------------------------------- per-point update

    def _fire(
        self,
        result: BatchResult,
        rule: str,
        point: PointSnapshot,
        day: date,
        evidence: dict[str, Any],
    ) -> None:
        key = (rule, point.id, day)
        if key in self.fired or not self.rules(rule).enabled:
            return
        self.fired.add(key)
        result.hits.append(
            Hit(rule, "point", point.id, point.enterprise_id, day, evidence, point.name)
        )

    def _apply(
        self,
        reading: TelemetryReading,
        item: _Bound,
        result: BatchResult,
        local: datetime,
        day: date,
        seconds: int,
        latency: float,
        grade: int,
        params: _Params,
        trace: str | None,
        texts: tuple[bytes, bytes, bytes],
        trace_json: tuple[bytes, Headers] | None,
    ) -> Message | None:
        """Apply one point's values of a reading; its `telemetry.points` message, or None for
        a duplicate. `local`, `day`, `seconds` (since local midnight), `latency`, `grade` and
        `texts` (its JSON pieces) are the reading's, computed once for all its points."""
        point = item.point
        state = self.cache[point.id]
        t = reading.data_time
        agg = state.days[day]
        in_order = state.last_time is None or t > state.last_time
        cn = reading.cn
        sample = cn in self.sample_cns
        values, quality, flag_ok = item.values, item.quality, item.flag_ok
        slot = 0
        if sample:
            slot = seconds // agg.interval_s
            if agg.slots[slot >> 3] & (1 << (slot & 7)):
                READINGS.labels("duplicate").inc()
                return None
        else:
            last = state.runs.get("cn:" + cn)
            if last is not None and t.isoformat() <= last:
                READINGS.labels("duplicate").inc()
                return None
            state.runs["cn:" + cn] = t.isoformat()

        interval_energy = values.get("energy_interval_kwh")
        if interval_energy is not None and flag_ok.get("energy_interval_kwh", False):
            if interval_energy < -params.negative_energy["min_negative_kwh"] - _EPSILON:
                quality.setdefault("energy_interval_kwh", []).append("negative_energy")
                agg.neg_energy_events += 1
                self._fire(
                    result,
                    R.NEGATIVE_ENERGY,
                    point,
                    day,
                    {
                        "kind": "negative_interval_energy",
                        "energy_kwh": interval_energy,
                        "data_time": t.isoformat(),
                    },
                )
            else:
                agg.reported_kwh += max(interval_energy, 0.0)

        if sample:
            if item.raw_counter is not None:
                self._counter(state, agg, item, t, local, in_order, result, params)
            self._power(state, agg, item, t, in_order, result, params)
        valid = True
        for ok in flag_ok.values():
            if not ok:
                valid = False
                break
        if valid and quality:
            valid = not any(flag in INVALIDATING for flags in quality.values() for flag in flags)
        if sample:
            bit = 1 << (slot & 7)
            agg.slots[slot >> 3] |= bit
            if valid:
                agg.valid_slots[slot >> 3] |= bit
            agg.samples += 1
            if valid:
                agg.valid_samples += 1
                if state.last_valid_time is None or t > state.last_valid_time:
                    state.last_valid_time = t
            power = values.get("active_power_kw")
            if power is not None and valid:
                agg.p_sum += power
                agg.p_n += 1
                top = max(power, values.get("active_power_kw:max", power))
                agg.p_max = top if agg.p_max is None else max(agg.p_max, top)
                low = min(power, values.get("active_power_kw:min", power))
                agg.p_min = low if agg.p_min is None else min(agg.p_min, low)
            if grade:
                agg.latency_grades[min(grade, 5) - 1] += 1
                agg.latency_max_s = max(agg.latency_max_s, latency)
            if grade and grade >= params.latency["finding_min_grade"]:
                self._fire(
                    result,
                    R.DATA_LATENCY,
                    point,
                    day,
                    {
                        "grade": grade,
                        "latency_s": round(latency, 1),
                        "data_time": t.isoformat(),
                        "received_at": reading.received_at.isoformat(),
                    },
                )
        if agg.first_time is None or t < agg.first_time:
            agg.first_time = t
        if agg.last_time is None or t > agg.last_time:
            agg.last_time = t
        agg.dirty = True
        if in_order:
            state.last_time = t
        received = reading.received_at
        if state.last_received_at is None or received > state.last_received_at:
            state.last_received_at = received
        state.dirty = True
        return point_message(
            self.points_topic,
            point,
            reading,
            values,
            {k: v for k, v in quality.items() if v} if quality else quality,
            valid,
            trace or new_trace_id(),
            point_json=item.point_json,
            reading_json=texts,
            trace_json=trace_json,
        )

    def _counter(
        self,
        state: PointState,
        agg: DayAgg,
        item: _Bound,
        t: datetime,
        local: datetime,
        in_order: bool,
        result: BatchResult,
        params: _Params,
    ) -> None:
        values = item.values
        key = "energy_total_kwh" if "energy_total_kwh" in values else "energy_total_kwh:max"
        value = values.get(key)
        if (
            value is None
            or item.raw_counter is None
            or not item.flag_ok.get(key, False)
            or not in_order
        ):
            return
        point = item.point
        previous, previous_time = state.counter_kwh, state.counter_time
        state.counter_kwh, state.counter_time = value, t
        if previous is None or previous_time is None or t <= previous_time:
            return
        neg = params.negative_energy
        delta = value - previous
        flag: str | None = None
        if delta < -neg["min_negative_kwh"] - _EPSILON:
            ratio = _ratio("energy_total_kwh", point) or 1.0
            raw_prev, raw_now = previous / ratio, item.raw_counter
            modulus = 10.0 ** len(str(int(max(raw_prev, 1.0))))
            fraction = neg["rollover_fraction"]
            if raw_prev >= fraction * modulus and raw_now < (1 - fraction) * modulus:
                delta = (modulus - raw_prev + raw_now) * ratio
                agg.rollovers += 1
                flag = "counter_rollover"
            else:
                kind = "reset" if value <= neg["reset_fraction"] * previous else "backwards"
                agg.neg_energy_events += 1
                if kind == "reset":
                    agg.resets += 1
                item.quality.setdefault(key, []).append("counter_" + kind)
                self._fire(
                    result,
                    R.NEGATIVE_ENERGY,
                    point,
                    agg.day,
                    {
                        "kind": kind,
                        "previous_kwh": round(previous, 4),
                        "current_kwh": round(value, 4),
                        "delta_kwh": round(value - previous, 4),
                        "previous_time": previous_time.isoformat(),
                        "data_time": t.isoformat(),
                    },
                )
                return
        delta = max(delta, 0.0)
        if flag:
            item.quality.setdefault(key, []).append(flag)
        values["energy_delta_kwh"] = delta
        agg.energy_kwh += delta
        agg.deltas += 1
        before = previous_time.astimezone(self.tz)
        if before.hour == local.hour and before.date() == local.date():
            agg.hourly_kwh[local.hour] += delta
        else:  # spread over the hours it was used in (a gap is not one hour's energy)
            _spread_hourly(agg.hourly_kwh, before, local, delta)

    def _power(
        self,
        state: PointState,
        agg: DayAgg,
        item: _Bound,
        t: datetime,
        in_order: bool,
        result: BatchResult,
        params: _Params,
    ) -> None:
        point = item.point
        values, flag_ok = item.values, item.flag_ok
        rated = point.rated_kw or 0.0
        power = values.get("active_power_kw")
        if power is not None and flag_ok.get("active_power_kw", False):
            neg = params.negative_power
            limit = max(neg["min_kw"], neg["rated_fraction"] * rated)
            if power < -limit - _EPSILON:
                item.quality.setdefault("active_power_kw", []).append("negative_power")
                agg.neg_power_samples += 1
                if in_order:
                    state.neg_run += 1
                    agg.neg_power_run_max = max(agg.neg_power_run_max, state.neg_run)
                    if state.neg_run >= neg["consecutive"]:
                        self._fire(
                            result,
                            R.NEGATIVE_POWER,
                            point,
                            agg.day,
                            {
                                "consecutive": state.neg_run,
                                "power_kw": power,
                                "limit_kw": -limit,
                                "data_time": t.isoformat(),
                            },
                        )
            elif in_order:
                state.neg_run = 0
        if not in_order:
            return
        present = item.resolution  # exactly the keys of CONSTANT_KEYS the reading has
        if not present:
            return
        const = params.constant
        idle_kw = max(const["idle_min_kw"], const["idle_rated_fraction"] * rated)
        # A stopped facility (P at or below idle) is not this check, its stand-by current
        # included: a few amperes steady at the meter's resolution for a night is no fault.
        stopped = (
            power is not None and flag_ok.get("active_power_kw", False) and abs(power) <= idle_kw
        )
        runs = state.runs
        for key in present if len(present) == 1 else CONSTANT_KEYS:
            value = values.get(key)
            if value is None or not flag_ok.get(key, False):
                continue
            idle = idle_kw if key == "active_power_kw" else const["idle_current_a"]
            run = runs.get(key)
            resolution = item.resolution.get(key, 0.0)
            # a value a few resolution steps tall (a CT's secondary at stand-by) cannot vary
            coarse = abs(value) < const["min_resolution_steps"] * resolution
            if stopped or coarse or abs(value) <= idle:
                runs.pop(key, None)
                continue
            band = max(const["relative"] * abs(value), resolution) + 1e-9
            if run is not None:
                low, high = min(run[1], value), max(run[2], value)
                if high - low <= band:
                    run[1], run[2], run[3] = low, high, run[3] + 1
                else:
                    run = None
            if run is None:
                run = [t.isoformat(), value, value, 1]
                runs[key] = run
                hours = 0.0  # the run starts at t: fromisoformat(t.isoformat()) == t
            else:
                hours = (t - datetime.fromisoformat(run[0])).total_seconds() / 3600.0
            if hours >= const["window_h"] and run[3] >= const["min_samples"]:
                agg.const_max_h = max(agg.const_max_h, hours)
                item.quality.setdefault(key, []).append("constant_value")
                self._fire(
                    result,
                    R.CONSTANT_POWER,
                    point,
                    agg.day,
                    {
                        "key": key,
                        "value": value,
                        "since": run[0],
                        "hours": round(hours, 2),
                        "samples": run[3],
                        "band": band,
                    },
                )

    # -------------------------------------------------------------------------- storage

    async def _load(self, bound: Sequence[tuple[TelemetryReading, _Outcome, datetime]]) -> None:
        wanted_points: dict[str, PointSnapshot] = {}
        wanted_days: set[tuple[str, date]] = set()
        cache = self.cache
        for _reading, outcome, local in bound:
            if isinstance(outcome, str):
                continue
            day = local.date()
            for item in outcome[0]:
                point = item.point
                state = cache.get(point.id)
                if state is None or day not in state.days:  # only what is not cached
                    wanted_points[point.id] = point
                    wanted_days.add((point.id, day))
        missing_points = [p for p in wanted_points if p not in self.cache]
        missing_days = [
            (p, d) for p, d in wanted_days if p not in self.cache or d not in self.cache[p].days
        ]
        if not missing_points and not missing_days:
            return
        async with self.database.session() as session:
            driver = await _driver(session)
            if missing_points:
                rows = await driver.fetch(
                    "SELECT * FROM validation.point_state WHERE point_id = ANY($1::text[])",
                    missing_points,
                )
                found = {r["point_id"]: r for r in rows}
                for point_id in missing_points:
                    snap = wanted_points[point_id]
                    row = found.get(point_id)
                    if row is None:
                        self.cache[point_id] = PointState(
                            point_id, snap.enterprise_id, snap.device_mn or ""
                        )
                    else:
                        runs = row["runs"]
                        self.cache[point_id] = PointState(
                            point_id,
                            snap.enterprise_id,
                            snap.device_mn or "",
                            counter_kwh=row["counter_kwh"],
                            counter_time=row["counter_time"],
                            last_time=row["last_time"],
                            last_valid_time=row["last_valid_time"],
                            last_received_at=row["last_received_at"],
                            neg_run=row["neg_run"],
                            runs=runs if isinstance(runs, dict) else _json_loads(runs),
                            rev=row["rev"],
                        )
            if missing_days:
                rows = await driver.fetch(
                    "SELECT d.* FROM validation.point_daily d JOIN unnest($1::text[], $2::date[]) AS k(p, d)"  # noqa: E501
                    " ON d.point_id = k.p AND d.day = k.d",
                    [p for p, _ in missing_days],
                    [d for _, d in missing_days],
                )
                found_days = {(r["point_id"], r["day"]): r for r in rows}
                for point_id, day in missing_days:
                    snap = wanted_points[point_id]
                    state = self.cache[point_id]
                    row = found_days.get((point_id, day))
                    interval = max(int(snap.expected_interval_s), 1)
                    if row is None:
                        state.days[day] = DayAgg(
                            point_id, day, snap.enterprise_id, snap.device_mn or "", interval
                        )
                    else:
                        state.days[day] = DayAgg(
                            point_id,
                            day,
                            row["enterprise_id"],
                            row["mn"],
                            row["interval_s"],
                            energy_kwh=row["energy_kwh"],
                            reported_kwh=row["reported_kwh"],
                            deltas=row["deltas"],
                            p_max=row["p_max"],
                            p_min=row["p_min"],
                            p_sum=row["p_sum"],
                            p_n=row["p_n"],
                            samples=row["samples"],
                            valid_samples=row["valid_samples"],
                            slots=bytearray(row["slots"]),
                            valid_slots=bytearray(row["valid_slots"]),
                            hourly_kwh=list(row["hourly_kwh"]),
                            neg_energy_events=row["neg_energy_events"],
                            resets=row["resets"],
                            rollovers=row["rollovers"],
                            neg_power_samples=row["neg_power_samples"],
                            neg_power_run_max=row["neg_power_run_max"],
                            const_max_h=row["const_max_h"],
                            latency_max_s=row["latency_max_s"],
                            latency_grades=list(row["latency_grades"]),
                            first_time=row["first_time"],
                            last_time=row["last_time"],
                        )

    async def _flush(
        self,
        result: BatchResult,
        touched: set[str],
        publishing: asyncio.Future[None] | None,
    ) -> None:
        """One transaction: point state (revision-checked), day rows, unbound counts, streaming
        findings. It commits only after `publishing` (the batch's `telemetry.points`) is
        acknowledged, so a point is never marked seen before its reading is out."""
        states = [self.cache[p] for p in touched if self.cache[p].dirty]
        days = [a for s in states for a in s.days.values() if a.dirty]
        now = self.clock()
        try:
            async with self.database.transaction() as session:
                driver = await _driver(session, begin=True)
                if (states or days) and driver not in self._staged:
                    await driver.execute(_STAGING_TABLES)
                    self._staged.add(driver)
                if states:
                    await driver.copy_records_to_table(
                        _STATE_STAGE, records=_state_rows(states), schema_name="pg_temp"
                    )
                    updated = await driver.fetchval(_STATE_MERGE)
                    if updated != len(states):
                        raise StateConflict("point state changed under this consumer; reloading")
                if days:
                    await driver.copy_records_to_table(
                        _DAILY_STAGE, records=[_daily_row(a) for a in days], schema_name="pg_temp"
                    )
                    await driver.execute(_DAILY_MERGE)
                if result.unbound:
                    await driver.executemany(
                        _UNBOUND_UPSERT,
                        [
                            (mn, day, reason, detail, v[0], v[1], v[2])
                            for (mn, day, reason, detail), v in result.unbound.items()
                        ],
                    )
                if result.hits:
                    await self.findings.record(session, result.hits, now, accumulate=True)
                if publishing is not None:
                    await publishing
        except BaseException as exc:
            self._staged.clear()  # a rolled-back transaction may have created them
            if publishing is not None:
                if isinstance(exc, asyncio.CancelledError):
                    publishing.cancel()
                with contextlib.suppress(BaseException):  # the batch fails and is retried anyway
                    await publishing
            raise
        for state in states:
            state.rev += 1
            state.dirty = False
            stale = sorted(state.days)[:-3]
            for old in stale:  # keep the last three days in memory
                del state.days[old]
        for agg in days:
            agg.dirty = False


def _spread_hourly(hourly: list[float], begin: datetime, end: datetime, delta: float) -> None:
    """Add `delta`, used between local times `begin` and `end`, to the hours of `end`'s day
    in proportion to time; what was used before that day's midnight goes to hour 0."""
    total = (end - begin).total_seconds()
    if total <= 0:
        hourly[end.hour] += delta
        return
    cursor = max(begin, end.replace(hour=0, minute=0, second=0, microsecond=0))
    hourly[0] += delta * (cursor - begin).total_seconds() / total
    while cursor < end:
        following = min(end, cursor.replace(minute=0, second=0, microsecond=0) + _HOUR)
        hourly[cursor.hour] += delta * (following - cursor).total_seconds() / total
        cursor = following


_HOUR = timedelta(hours=1)


def _ratio(quantity: str, point: PointSnapshot) -> float:
    if quantity in ("active_power_kw", "energy_total_kwh", "energy_interval_kwh"):
        return point.ct_ratio * point.pt_ratio
    if quantity == "current_a":
        return point.ct_ratio
    if quantity == "voltage_v":
        return point.pt_ratio
    return 1.0


def _json_loads(value: Any) -> dict[str, Any]:
    loaded = json.loads(value) if isinstance(value, str | bytes) else value
    return loaded if isinstance(loaded, dict) else {}


async def _driver(session: AsyncSession, *, begin: bool = False) -> Any:
    """The asyncpg connection under `session`. SQLAlchemy opens the database transaction at
    its first statement, so with `begin` one is sent first: statements sent on the driver
    directly then belong to the session's transaction instead of committing one by one."""
    connection = await session.connection()
    if begin:
        await connection.exec_driver_sql("SELECT 1")
    raw = await connection.get_raw_connection()
    return raw.driver_connection


_STATE_COLUMNS = (
    "point_id",
    "enterprise_id",
    "mn",
    "counter_kwh",
    "counter_time",
    "last_time",
    "last_valid_time",
    "last_received_at",
    "neg_run",
    "runs",
    "rev",
)
_DAILY_COLUMNS = (
    "point_id",
    "day",
    "enterprise_id",
    "mn",
    "interval_s",
    "energy_kwh",
    "reported_kwh",
    "deltas",
    "p_max",
    "p_min",
    "p_sum",
    "p_n",
    "samples",
    "valid_samples",
    "slots",
    "valid_slots",
    "hourly_kwh",
    "neg_energy_events",
    "resets",
    "rollovers",
    "neg_power_samples",
    "neg_power_run_max",
    "const_max_h",
    "latency_max_s",
    "latency_grades",
    "first_time",
    "last_time",
)

# A batch's rows are copied (COPY, binary) into temporary tables of the session, then merged
# with one statement each. Arrays and JSON travel as text and are cast by the merge (encoding
# them as arrays element by element costs the binder more than the whole COPY).
_STATE_STAGE = "validation_bind_state"
_DAILY_STAGE = "validation_bind_daily"
_STAGING_TABLES = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STATE_STAGE} (
  point_id text, enterprise_id text, mn text, counter_kwh float8, counter_time timestamptz,
  last_time timestamptz, last_valid_time timestamptz, last_received_at timestamptz,
  neg_run int, runs text, rev bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {_DAILY_STAGE} (
  point_id text, day date, enterprise_id text, mn text, interval_s int, energy_kwh float8,
  reported_kwh float8, deltas int, p_max float8, p_min float8, p_sum float8, p_n int,
  samples int, valid_samples int, slots bytea, valid_slots bytea, hourly_kwh text,
  neg_energy_events int, resets int, rollovers int, neg_power_samples int,
  neg_power_run_max int, const_max_h float8, latency_max_s float8, latency_grades text,
  first_time timestamptz, last_time timestamptz
) ON COMMIT DELETE ROWS
"""
_STATE_MERGE = f"""
WITH merged AS (
  INSERT INTO validation.point_state AS s ({", ".join(_STATE_COLUMNS)})
  SELECT {", ".join("runs::jsonb" if c == "runs" else c for c in _STATE_COLUMNS)}
  FROM pg_temp.{_STATE_STAGE}
  ON CONFLICT (point_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _STATE_COLUMNS[1:])}
  WHERE s.rev = EXCLUDED.rev - 1
  RETURNING 1
)
SELECT count(*) FROM merged
"""  # noqa: S608
_DAILY_CASTS = {"hourly_kwh": "hourly_kwh::float8[]", "latency_grades": "latency_grades::int[]"}
_DAILY_MERGE = f"""
INSERT INTO validation.point_daily ({", ".join(_DAILY_COLUMNS)})
SELECT {", ".join(_DAILY_CASTS.get(c, c) for c in _DAILY_COLUMNS)}
FROM pg_temp.{_DAILY_STAGE}
ON CONFLICT (point_id, day) DO UPDATE SET
  {", ".join(f"{c} = EXCLUDED.{c}" for c in _DAILY_COLUMNS[2:])}
"""  # noqa: S608

_UNBOUND_UPSERT = """
INSERT INTO validation.unbound_readings AS u
  (mn, day, reason, detail, enterprise_id, count, last_seen_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (mn, day, reason, detail) DO UPDATE SET
  count = u.count + EXCLUDED.count, last_seen_at = greatest(u.last_seen_at, EXCLUDED.last_seen_at),
  enterprise_id = coalesce(EXCLUDED.enterprise_id, u.enterprise_id)
"""


def _state_rows(states: Sequence[PointState]) -> list[tuple[Any, ...]]:
    dumps = json.dumps
    return [
        (
            s.point_id,
            s.enterprise_id,
            s.mn,
            s.counter_kwh,
            s.counter_time,
            s.last_time,
            s.last_valid_time,
            s.last_received_at,
            s.neg_run,
            dumps(s.runs),
            s.rev + 1,
        )
        for s in states
    ]


def _array_text(values: list[float] | list[int]) -> str:
    """PostgreSQL array input (`{1.5, 0.0}`): the `repr` of a float reads back as the same
    float8."""
    return "{" + repr(values)[1:-1] + "}"


def _daily_row(a: DayAgg) -> tuple[Any, ...]:
    return (
        a.point_id,
        a.day,
        a.enterprise_id,
        a.mn,
        a.interval_s,
        a.energy_kwh,
        a.reported_kwh,
        a.deltas,
        a.p_max,
        a.p_min,
        a.p_sum,
        a.p_n,
        a.samples,
        a.valid_samples,
        bytes(a.slots),
        bytes(a.valid_slots),
        _array_text(a.hourly_kwh),
        a.neg_energy_events,
        a.resets,
        a.rollovers,
        a.neg_power_samples,
        a.neg_power_run_max,
        a.const_max_h,
        a.latency_max_s,
        _array_text(a.latency_grades),
        a.first_time,
        a.last_time,
    )


# ------------------------------------------------------------------ telemetry.points messages

_POINT_HEADERS = (
    (TYPE_HEADER, PointReading.event_type.encode()),
    (VERSION_HEADER, str(PointReading.event_version).encode()),
)


def point_message(
    topic: str,
    point: PointSnapshot,
    reading: TelemetryReading,
    values: dict[str, float],
    quality: dict[str, list[str]],
    valid: bool,
    trace: str,
    *,
    event_id: str | None = None,
    produced_at: datetime | None = None,
    point_json: tuple[bytes, bytes, bytes] | None = None,
    reading_json: tuple[bytes, bytes, bytes] | None = None,
    trace_json: tuple[bytes, Headers] | None = None,
) -> Message:
    """What `encode(PointReading(...), trace_id=trace, topic=topic)` gives for the reading's
    values of `point`, without building the two pydantic models (a third of the binder's
    time): the same JSON envelope, key and headers — `tests/services/validation` compares
    them. Every field is already of its type: values are floats, `data_time` is aware.

    The envelope is joined from JSON pieces, each written by `to_json` (pydantic's own
    serializer, as `encode` uses): those of the point and of the reading are the same for
    every message of a point or a reading, and the binder passes them in ready-made."""
    p_head, p_circuit, key = point_json or _point_json(point)
    r_ids, r_time, r_tail = reading_json or _reading_json(reading)
    t_json, headers = trace_json or _trace_json(trace)
    value = b"".join(
        (
            _HEAD,
            (event_id or new_uuid_text()).encode(),
            _PRODUCED_AT,
            to_json(produced_at or datetime.now(UTC)),
            _TRACE,
            t_json,
            _DATA,
            p_head,
            r_ids,
            p_circuit,
            r_time,
            to_json(values, inf_nan_mode="null"),
            _QUALITY,
            to_json(quality) if quality else b"{}",
            _VALID if valid else _INVALID,
            r_tail,
        )
    )
    return Message(topic, key, value, headers)


# The envelope of a telemetry.points message, in the field order of Envelope and PointReading.
_HEAD = (
    b'{"type":'
    + to_json(PointReading.event_type)
    + b',"version":'
    + to_json(PointReading.event_version)
    + b',"id":"'
)
_PRODUCED_AT = b'","produced_at":'
_TRACE = b',"trace_id":'
_DATA = b',"data":{"enterprise_id":'
_QUALITY = b',"quality":'
_VALID = b',"valid":true'
_INVALID = b',"valid":false'


def _point_json(point: PointSnapshot) -> tuple[bytes, bytes, bytes]:
    """`<enterprise_id>,"point_id":<id>,"mn":`, `,"circuit":<circuit>,"interval":` and the
    message key."""
    return (
        to_json(point.enterprise_id) + b',"point_id":' + to_json(point.id) + b',"mn":',
        b',"circuit":' + to_json(point.circuit) + b',"interval":',
        point.enterprise_id.encode(),
    )


def _trace_json(trace: str) -> tuple[bytes, Headers]:
    """The trace id as JSON and the message headers."""
    return to_json(trace), (*_POINT_HEADERS, (TRACE_HEADER, trace.encode()))


def _reading_json(reading: TelemetryReading) -> tuple[bytes, bytes, bytes]:
    """`<mn>,"cn":<cn>`, `<interval>,"data_time":<time>,"values":` and
    `,"source_key":<key>,"history":<bool>}}`."""
    return (
        to_json(reading.mn) + b',"cn":' + to_json(reading.cn),
        to_json(INTERVALS.get(reading.cn, "other"))
        + b',"data_time":'
        + to_json(reading.data_time)
        + b',"values":',
        b',"source_key":'
        + to_json(reading.idempotency_key)
        + (b',"history":true}}' if reading.history else b',"history":false}}'),
    )


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC start and end of a local day."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    end = start + timedelta(days=1)
    return start.astimezone(UTC), end.astimezone(UTC)
