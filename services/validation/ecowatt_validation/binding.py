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
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import ecowatt_hj212 as hj212
from ecowatt_kernel.bus import Bus, Record, TransientError
from ecowatt_kernel.contracts import ContractError, PointReading, TelemetryReading, decode, encode
from ecowatt_kernel.contracts.registry import PointSnapshot
from ecowatt_kernel.db import Database
from ecowatt_kernel.registry_view import RegistryView
from prometheus_client import Counter
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


def _resolution(text: str) -> float:
    _, dot, decimals = text.strip().partition(".")
    digits = len(decimals.rstrip()) if dot else 0
    return 10.0**-digits


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


@dataclass
class _Bound:
    point: PointSnapshot
    values: dict[str, float] = field(default_factory=dict)
    quality: dict[str, list[str]] = field(default_factory=dict)
    resolution: dict[str, float] = field(default_factory=dict)
    flag_ok: dict[str, bool] = field(default_factory=dict)
    raw_counter: float | None = None


@dataclass
class BatchResult:
    points: list[PointReading] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    unbound: dict[tuple[str, date, str, str], list[Any]] = field(default_factory=dict)


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
            bound = [(r, self._bind(r)) for r in readings]
            await self._load(bound)
            result = BatchResult()
            for reading, outcome in bound:
                if isinstance(outcome, str):
                    self._count_unbound(result, reading, outcome, "", None)
                    continue
                items, unbound = outcome
                for reason, detail in unbound:
                    device = self.view.device(reading.mn)
                    self._count_unbound(
                        result, reading, reason, detail, device.enterprise_id if device else None
                    )
                for item in items:
                    touched.add(item.point.id)
                    published = self._apply(reading, item, result)
                    if published is not None:
                        result.points.append(published)
            if self.publish_points and result.points:
                await self.bus.publish([encode(p, topic=self.points_topic) for p in result.points])
            await self._flush(result, touched)
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

    def _bind(self, reading: TelemetryReading) -> str | tuple[list[_Bound], list[tuple[str, str]]]:
        device = self.view.device(reading.mn)
        if device is None:
            return "unknown_device"
        if device.status != "active":
            return "inactive_device"
        try:
            profile = hj212.get_profile(device.electricity_profile)
        except hj212.ProfileError:
            return "unknown_profile"
        points = self.view.points_of_device(reading.mn)
        by_circuit = {p.circuit: p for p in points if p.status == "active"}
        inactive = {p.circuit for p in points if p.status != "active"}
        totals = [p for p in by_circuit.values() if p.point_type == "total"]
        bound: dict[str, _Bound] = {}
        unbound: list[tuple[str, str]] = []
        for code, group in reading.items.items():
            flag = group.get("Flag")
            ok = flag is None or flag.upper() in self.valid_flags
            for suffix, text in group.items():
                if suffix == "Flag":
                    continue
                binding = profile.resolve(code, suffix)
                if binding is None:
                    unbound.append(("unknown_code", f"{code}-{suffix}"))
                    continue
                point = self._point_for(binding.circuit, by_circuit, totals)
                if point is None:
                    reason = "inactive_point" if binding.circuit in inactive else "unknown_circuit"
                    unbound.append((reason, str(binding.circuit)))
                    continue
                try:
                    raw = float(text)
                except ValueError:
                    unbound.append(("unparseable", f"{code}-{suffix}"))
                    continue
                if not math.isfinite(raw):
                    unbound.append(("unparseable", f"{code}-{suffix}"))
                    continue
                item = bound.get(point.id)
                if item is None:
                    item = bound[point.id] = _Bound(point)
                quantity = binding.quantity.value
                ratio = _ratio(quantity, point)
                key = quantity
                if binding.phase:
                    key += ":" + binding.phase
                if binding.aggregate in ("min", "max"):
                    key += ":" + binding.aggregate
                item.values[key] = raw * ratio
                item.resolution[key] = _resolution(text) * abs(ratio)
                item.flag_ok[key] = ok
                if flag and flag.upper() != "N":
                    item.quality.setdefault(key, []).append(f"flag:{flag.upper()}")
                if quantity == "energy_total_kwh" and binding.aggregate in ("instant", "max"):  # noqa: SIM102
                    if binding.aggregate == "instant" or item.raw_counter is None:
                        item.raw_counter = raw
        return list(bound.values()), sorted(set(unbound))

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
        self, reading: TelemetryReading, item: _Bound, result: BatchResult
    ) -> PointReading | None:
        point = item.point
        state = self.cache[point.id]
        t = reading.data_time
        local = t.astimezone(self.tz)
        day = local.date()
        agg = state.days[day]
        in_order = state.last_time is None or t > state.last_time
        cn = reading.cn
        sample = cn in self.sample_cns
        values, quality = item.values, item.quality
        if sample:
            midnight = datetime(day.year, day.month, day.day, tzinfo=self.tz)
            slot = int((local - midnight).total_seconds()) // agg.interval_s
            if agg.slot_taken(slot):
                READINGS.labels("duplicate").inc()
                return None
        else:
            last = state.runs.get("cn:" + cn)
            if last is not None and t.isoformat() <= last:
                READINGS.labels("duplicate").inc()
                return None
            state.runs["cn:" + cn] = t.isoformat()

        neg = self.rules(R.NEGATIVE_ENERGY).params
        interval_energy = values.get("energy_interval_kwh")
        if interval_energy is not None and item.flag_ok.get("energy_interval_kwh", False):
            if interval_energy < -neg["min_negative_kwh"] - _EPSILON:
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
            self._counter(state, agg, item, reading, local, in_order, result)
            self._power(state, agg, item, reading, in_order, result)
        valid = all(item.flag_ok.values()) and not any(
            flag in INVALIDATING for flags in quality.values() for flag in flags
        )
        if sample:
            agg.take(slot, valid)
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
            latency_rule = self.rules(R.DATA_LATENCY).params
            latency = (reading.received_at - t).total_seconds()
            grade = latency_grade(max(latency, 0.0), latency_rule["grade_bounds_h"])
            agg.latency_grades[min(grade, 5) - 1] += 1
            agg.latency_max_s = max(agg.latency_max_s, latency)
            if grade >= latency_rule["finding_min_grade"]:
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
        agg.first_time = t if agg.first_time is None else min(agg.first_time, t)
        agg.last_time = t if agg.last_time is None else max(agg.last_time, t)
        agg.dirty = True
        if in_order:
            state.last_time = t
        state.last_received_at = (
            reading.received_at
            if state.last_received_at is None
            else max(state.last_received_at, reading.received_at)
        )
        state.dirty = True
        return PointReading(
            enterprise_id=point.enterprise_id,
            point_id=point.id,
            mn=reading.mn,
            cn=cn,
            circuit=point.circuit,
            interval=INTERVALS.get(cn, "other"),  # type: ignore[arg-type]
            data_time=t,
            values=values,
            quality={k: v for k, v in quality.items() if v},
            valid=valid,
            source_key=reading.idempotency_key,
        )

    def _counter(
        self,
        state: PointState,
        agg: DayAgg,
        item: _Bound,
        reading: TelemetryReading,
        local: datetime,
        in_order: bool,
        result: BatchResult,
    ) -> None:
        key = "energy_total_kwh" if "energy_total_kwh" in item.values else "energy_total_kwh:max"
        value = item.values.get(key)
        if (
            value is None
            or item.raw_counter is None
            or not item.flag_ok.get(key, False)
            or not in_order
        ):
            return
        t = reading.data_time
        point = item.point
        previous, previous_time = state.counter_kwh, state.counter_time
        state.counter_kwh, state.counter_time = value, t
        if previous is None or previous_time is None or t <= previous_time:
            return
        params = self.rules(R.NEGATIVE_ENERGY).params
        ratio = _ratio("energy_total_kwh", point) or 1.0
        delta = value - previous
        flag: str | None = None
        if delta < -params["min_negative_kwh"] - _EPSILON:
            raw_prev, raw_now = previous / ratio, item.raw_counter
            modulus = 10.0 ** len(str(int(max(raw_prev, 1.0))))
            fraction = params["rollover_fraction"]
            if raw_prev >= fraction * modulus and raw_now < (1 - fraction) * modulus:
                delta = (modulus - raw_prev + raw_now) * ratio
                agg.rollovers += 1
                flag = "counter_rollover"
            else:
                kind = "reset" if value <= params["reset_fraction"] * previous else "backwards"
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
        item.values["energy_delta_kwh"] = delta
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
        reading: TelemetryReading,
        in_order: bool,
        result: BatchResult,
    ) -> None:
        point = item.point
        t = reading.data_time
        rated = point.rated_kw or 0.0
        power = item.values.get("active_power_kw")
        if power is not None and item.flag_ok.get("active_power_kw", False):
            neg = self.rules(R.NEGATIVE_POWER).params
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
        const = self.rules(R.CONSTANT_POWER).params
        idle_kw = max(const["idle_min_kw"], const["idle_rated_fraction"] * rated)
        # A stopped facility (P at or below idle) is not this check, its stand-by current
        # included: a few amperes steady at the meter's resolution for a night is no fault.
        stopped = (
            power is not None
            and item.flag_ok.get("active_power_kw", False)
            and abs(power) <= idle_kw
        )
        for key in CONSTANT_KEYS:
            value = item.values.get(key)
            if value is None or not item.flag_ok.get(key, False):
                continue
            idle = idle_kw if key == "active_power_kw" else const["idle_current_a"]
            run = state.runs.get(key)
            if stopped or abs(value) <= idle:
                state.runs.pop(key, None)
                continue
            band = max(const["relative"] * abs(value), item.resolution.get(key, 0.0)) + 1e-9
            if run is not None:
                low, high = min(run[1], value), max(run[2], value)
                if high - low <= band:
                    run[1], run[2], run[3] = low, high, run[3] + 1
                else:
                    run = None
            if run is None:
                run = [t.isoformat(), value, value, 1]
                state.runs[key] = run
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

    async def _load(self, bound: Sequence[tuple[TelemetryReading, Any]]) -> None:
        wanted_points: dict[str, PointSnapshot] = {}
        wanted_days: set[tuple[str, date]] = set()
        for reading, outcome in bound:
            if isinstance(outcome, str):
                continue
            day = reading.data_time.astimezone(self.tz).date()
            for item in outcome[0]:
                wanted_points[item.point.id] = item.point
                wanted_days.add((item.point.id, day))
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

    async def _flush(self, result: BatchResult, touched: set[str]) -> None:
        states = [self.cache[p] for p in touched if self.cache[p].dirty]
        days = [a for s in states for a in s.days.values() if a.dirty]
        now = self.clock()
        async with self.database.transaction() as session:
            driver = await _driver(session)
            if states:
                updated = await driver.fetch(_STATE_UPSERT, *_state_columns(states))
                if len(updated) != len(states):
                    raise StateConflict("point state changed under this consumer; reloading")
            if days:
                await driver.executemany(_DAILY_UPSERT, [_daily_row(a) for a in days])
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
    import json

    loaded = json.loads(value) if isinstance(value, str | bytes) else value
    return loaded if isinstance(loaded, dict) else {}


async def _driver(session: AsyncSession) -> Any:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


_STATE_UPSERT = """
INSERT INTO validation.point_state AS s
  (point_id, enterprise_id, mn, counter_kwh, counter_time, last_time, last_valid_time,
   last_received_at, neg_run, runs, rev)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::timestamptz[],
  $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::int[], $10::jsonb[], $11::bigint[])
ON CONFLICT (point_id) DO UPDATE SET
  enterprise_id = EXCLUDED.enterprise_id, mn = EXCLUDED.mn, counter_kwh = EXCLUDED.counter_kwh,
  counter_time = EXCLUDED.counter_time, last_time = EXCLUDED.last_time,
  last_valid_time = EXCLUDED.last_valid_time, last_received_at = EXCLUDED.last_received_at,
  neg_run = EXCLUDED.neg_run, runs = EXCLUDED.runs, rev = EXCLUDED.rev
WHERE s.rev = EXCLUDED.rev - 1
RETURNING point_id
"""


def _state_columns(states: Sequence[PointState]) -> list[list[Any]]:
    import json

    return [
        [s.point_id for s in states],
        [s.enterprise_id for s in states],
        [s.mn for s in states],
        [s.counter_kwh for s in states],
        [s.counter_time for s in states],
        [s.last_time for s in states],
        [s.last_valid_time for s in states],
        [s.last_received_at for s in states],
        [s.neg_run for s in states],
        [json.dumps(s.runs) for s in states],
        [s.rev + 1 for s in states],
    ]


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
_DAILY_UPSERT = (
    f"INSERT INTO validation.point_daily ({', '.join(_DAILY_COLUMNS)}) VALUES "  # noqa: S608
    f"({', '.join(f'${i}' for i in range(1, len(_DAILY_COLUMNS) + 1))}) "
    "ON CONFLICT (point_id, day) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _DAILY_COLUMNS[2:])
)

_UNBOUND_UPSERT = """
INSERT INTO validation.unbound_readings AS u
  (mn, day, reason, detail, enterprise_id, count, last_seen_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (mn, day, reason, detail) DO UPDATE SET
  count = u.count + EXCLUDED.count, last_seen_at = greatest(u.last_seen_at, EXCLUDED.last_seen_at),
  enterprise_id = coalesce(EXCLUDED.enterprise_id, u.enterprise_id)
"""


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
        a.hourly_kwh,
        a.neg_energy_events,
        a.resets,
        a.rollovers,
        a.neg_power_samples,
        a.neg_power_run_max,
        a.const_max_h,
        a.latency_max_s,
        a.latency_grades,
        a.first_time,
        a.last_time,
    )


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC start and end of a local day."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    end = start + timedelta(days=1)
    return start.astimezone(UTC), end.astimezone(UTC)
