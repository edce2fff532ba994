"""The `telemetry.readings` handler: binding, per-point rules, and the batch's effects.

One handler call gets one partition's records (keyed by MN, so all readings of a device, in
order). For each reading the device's plan (`plans.py`) gives the values of each point,
CT/PT applied; per point the binder then keeps, in memory and in `point_state` /
`point_daily` (`state.py`):

* the energy counter chain: ΔE between consecutive counter readings, roll-overs unwrapped,
  resets and backward steps flagged and excluded (never a huge delta);
* a bitmap of the day's sample slots (`expected_interval_s`): a reading whose slot is taken is
  a duplicate and changes nothing — at-least-once delivery never double-counts;
* power max/min/sum, valid and total samples, hourly energy, negative-power runs, constant-
  value runs, latency grades: the inputs of the daily rules.

Order of effects for a batch: publish the `PointReading`s (at least once, `messages.py`),
then one database transaction writes the state, the aggregates, unbound counts and any
streaming findings with their outbox events; then the bus commits the offsets. The state row
carries a revision; if another consumer wrote it meanwhile (a rebalance), the cache is
dropped and the batch retried from the database, so a redelivered batch is harmless.

Why one module of ~650 lines: the per-point rules (`_apply`, `_counter`, `_power`) run for
every point reading of the platform and change the same state and day aggregate in one pass;
they stay next to the batch loop that calls them, without indirection (see
`make bench-validation`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.bus import Bus, Message, Record
from ecowatt_kernel.contracts import ContractError, TelemetryReading, decode
from ecowatt_kernel.contracts.registry import PointSnapshot
from ecowatt_kernel.db import Database
from ecowatt_kernel.ids import new_uuid_texts
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.tracing import current_trace_id, new_trace_id
from prometheus_client import Counter
from pydantic_core import to_json

from ecowatt_validation import rules as R
from ecowatt_validation.binding.messages import point_message, reading_pieces, trace_pieces
from ecowatt_validation.binding.plans import CONSTANT_KEYS, Bound, Outcome, Planner, ratio
from ecowatt_validation.binding.state import DayAgg, PointState, StateStore
from ecowatt_validation.findings import FindingStore, Hit

__all__ = ["BatchResult", "Binder", "latency_grade"]

_logger = logging.getLogger(__name__)

READINGS = Counter(
    "ecowatt_validation_readings_total", "Readings handled by the binder, by outcome.", ["outcome"]
)
UNBOUND_VALUES = Counter(
    "ecowatt_validation_unbound_total", "Readings or values not bound to a point.", ["reason"]
)

INVALIDATING = frozenset(
    {"negative_power", "constant_value", "counter_reset", "counter_backwards", "negative_energy"}
)
_EPSILON = 1e-9  # values are decimal text: 99.99 - 100.0 must be -0.01, not a hair below


def latency_grade(seconds: float, bounds_h: Sequence[float]) -> int:
    """1 (≤ first bound) … len(bounds)+1 (beyond the last)."""
    hours = seconds / 3600.0
    for index, bound in enumerate(bounds_h, start=1):
        if hours <= bound:
            return index
    return len(bounds_h) + 1


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


class _Reading:
    """One reading's values shared by all its points, computed once."""

    __slots__ = (
        "_iso",
        "day",
        "grade",
        "hour_start",
        "latency",
        "local",
        "reading",
        "seconds",
        "t",
        "texts",
    )

    def __init__(
        self,
        reading: TelemetryReading,
        local: datetime,
        *,
        sample: bool,
        latency_bounds_h: Sequence[float],
    ) -> None:
        self.reading = reading
        self.t = reading.data_time
        self.local = local
        day = self.day = local.date()
        self.seconds = 0  # since local midnight, for sample slots
        self.grade = 0
        self.latency = 0.0
        if sample:
            midnight = datetime(day.year, day.month, day.day, tzinfo=local.tzinfo)
            self.seconds = int((local - midnight).total_seconds())
            if not reading.history:  # back-filled data are late by design: not judged
                self.latency = (reading.received_at - reading.data_time).total_seconds()
                self.grade = latency_grade(max(self.latency, 0.0), latency_bounds_h)
        # compared with stored UTC times: in UTC, so no comparison asks the zone for offsets
        self.hour_start = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        self.texts = reading_pieces(reading)
        self._iso: str | None = None

    @property
    def iso(self) -> str:
        """`data_time` in ISO 8601 (evidence, run starts), written once."""
        text = self._iso
        if text is None:
            text = self._iso = self.t.isoformat()
        return text


class _Batch:
    """What every point of a batch shares: results, rule parameters, trace, message pieces."""

    __slots__ = ("ids", "params", "produced_json", "result", "trace", "trace_json")

    def __init__(self, params: _Params, trace: str | None, ids: list[str]) -> None:
        self.result = BatchResult()
        self.params = params
        self.trace = trace
        self.trace_json = trace_pieces(trace) if trace is not None else None
        self.produced_json = to_json(datetime.now(UTC))  # the batch is produced at once
        self.ids = ids  # event ids, one taken per message (`new_uuid_texts`: one syscall)


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
        self.bus = bus
        self.view = view
        self.rules = rules
        self.tz = ZoneInfo(timezone)
        self.valid_flags = valid_flags
        self.sample_cns = sample_cns
        self.points_topic = points_topic
        self.publish_points = publish_points
        self.on_committed = on_committed
        self.clock = clock
        self.store = StateStore(database=database, findings=findings)
        self.cache = self.store.cache
        self.planner = Planner(view=view, valid_flags=valid_flags)
        self.fired: set[tuple[str, str, date]] = set()
        self.stats: dict[str, int] = defaultdict(int)
        view.on_change(self._registry_changed)

    def _registry_changed(
        self, entity: str, entity_id: str, old: object | None, new: object | None
    ) -> None:
        if entity in ("device", "point"):
            self.planner.clear()

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
            bind = self.planner.bind
            bound = [(r, bind(r), r.data_time.astimezone(tz)) for r in readings]
            await self._load(bound)
            params = _Params(self.rules)
            latency_bounds = params.latency["grade_bounds_h"]
            size = sum(len(outcome[0]) for _r, outcome, _l in bound if not isinstance(outcome, str))
            batch = _Batch(params, current_trace_id(), new_uuid_texts(size))
            result = batch.result
            sample_cns = self.sample_cns
            apply = self._apply
            messages = result.messages
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
                sample = reading.cn in sample_cns
                shared = _Reading(reading, local, sample=sample, latency_bounds_h=latency_bounds)
                for item in items:
                    touched.add(item.point.id)
                    message = apply(item, shared, sample, batch)
                    if message is not None:
                        messages.append(message)
            publishing = None
            if self.publish_points and result.messages:
                publishing = asyncio.ensure_future(self.bus.publish(result.messages))
            await self.store.flush(
                touched,
                unbound=result.unbound,
                hits=result.hits,
                now=self.clock(),
                publishing=publishing,
            )
        except BaseException:
            self.store.forget(touched)
            self.fired.clear()
            raise
        READINGS.labels("bound").inc(len(readings))
        if self.on_committed is not None and result.hits:
            self.on_committed()
        return result

    async def _load(self, bound: Sequence[tuple[TelemetryReading, Outcome, datetime]]) -> None:
        """Have the state and day row of every point and day of the batch in the cache."""
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
        if wanted_points:
            await self.store.load(wanted_points, wanted_days)

    # ------------------------------------------------------------------------ unbound values

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

    def _apply(self, item: Bound, shared: _Reading, sample: bool, batch: _Batch) -> Message | None:
        """Apply one point's values of a reading; its `telemetry.points` message, or None for
        a duplicate. `shared` holds what the reading's points have in common."""
        point = item.point
        state = self.cache[point.id]
        reading = shared.reading
        t = shared.t
        day = shared.day
        result = batch.result
        params = batch.params
        agg = state.days[day]
        in_order = state.last_time is None or t > state.last_time
        cn = reading.cn
        values, quality, flag_ok = item.values, item.quality, item.flag_ok
        slot = 0
        if sample:
            slot = shared.seconds // agg.interval_s
            if agg.slots[slot >> 3] & (1 << (slot & 7)):
                READINGS.labels("duplicate").inc()
                return None
        else:
            last = state.runs.get("cn:" + cn)
            if last is not None and shared.iso <= last:
                READINGS.labels("duplicate").inc()
                return None
            state.runs["cn:" + cn] = shared.iso

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
                        "data_time": shared.iso,
                    },
                )
            else:
                agg.reported_kwh += max(interval_energy, 0.0)

        if sample:
            if item.raw_counter is not None:
                self._counter(state, agg, item, shared, in_order, result, params)
            self._power(state, agg, item, shared, in_order, result, params)
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
            if not reading.history:  # a back-filled sample: the device was not reachable then
                agg.live_slots[slot >> 3] |= bit
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
            grade = shared.grade
            if grade:
                latency = shared.latency
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
                        "data_time": shared.iso,
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
            batch.trace or new_trace_id(),
            event_id=batch.ids.pop(),
            produced_json=batch.produced_json,
            point_json=item.point_json,
            reading_json=shared.texts,
            trace_json=batch.trace_json,
        )

    def _counter(
        self,
        state: PointState,
        agg: DayAgg,
        item: Bound,
        shared: _Reading,
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
        t = shared.t
        previous, previous_time = state.counter_kwh, state.counter_time
        state.counter_kwh, state.counter_time = value, t
        if previous is None or previous_time is None or t <= previous_time:
            return
        neg = params.negative_energy
        delta = value - previous
        flag: str | None = None
        if delta < -neg["min_negative_kwh"] - _EPSILON:
            factor = ratio("energy_total_kwh", point) or 1.0
            raw_prev, raw_now = previous / factor, item.raw_counter
            modulus = 10.0 ** len(str(int(max(raw_prev, 1.0))))
            fraction = neg["rollover_fraction"]
            if raw_prev >= fraction * modulus and raw_now < (1 - fraction) * modulus:
                delta = (modulus - raw_prev + raw_now) * factor
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
                        "data_time": shared.iso,
                    },
                )
                return
        delta = max(delta, 0.0)
        if flag:
            item.quality.setdefault(key, []).append(flag)
        values["energy_delta_kwh"] = delta
        agg.energy_kwh += delta
        agg.deltas += 1
        local = shared.local
        if previous_time >= shared.hour_start:  # the same local hour (and previous < t)
            agg.hourly_kwh[local.hour] += delta
        else:  # spread over the hours it was used in (a gap is not one hour's energy)
            _spread_hourly(agg.hourly_kwh, previous_time.astimezone(self.tz), local, delta)

    def _power(
        self,
        state: PointState,
        agg: DayAgg,
        item: Bound,
        shared: _Reading,
        in_order: bool,
        result: BatchResult,
        params: _Params,
    ) -> None:
        point = item.point
        t = shared.t
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
                                "data_time": shared.iso,
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
                run = [shared.iso, value, value, 1]
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
