"""The alarm engine and its event-time layer in memory, without infrastructure: what the
processor does with a batch (offer, re-judge when due, keep samples after a checkpoint), so
that unit tests and the worked-example charts drive the real code with readings that arrive
when and in the order they say."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from alarm_city import SyntheticCity
from ecowatt_alarm.engine import Effects, Engine, EnterpriseRuntime, Sample
from ecowatt_alarm.engine.eventtime import Arrival, EventTime
from ecowatt_alarm.model import Learned, ModelCache
from ecowatt_alarm.processor import power_of
from ecowatt_alarm.rules import RuleSet
from ecowatt_alarm.suppression import Suppressions
from ecowatt_kernel.contracts import PointReading, RegistryChange
from ecowatt_kernel.registry_view import RegistryView

__all__ = ["EngineRig", "arrival"]


def arrival(reading: PointReading) -> Arrival:
    """What the processor makes of a real-time reading."""
    t = reading.data_time.timestamp()
    power, voltage = power_of(reading) if reading.valid else (None, None)
    sample = None if power is None else Sample(t, reading.point_id, power, voltage)
    return Arrival(reading.mn, t, sample)


class EngineRig:
    """A city's archive, filings and stop orders, and the engine over them."""

    def __init__(
        self,
        city: SyntheticCity,
        *,
        lateness_s: float = 600.0,
        horizon_s: float = 86400.0,
        group_ratio: Callable[[str], float | None] = lambda _: None,
        rules: RuleSet | None = None,
        drop: Callable[[RegistryChange], bool] = lambda _: False,
    ) -> None:
        self.city = city
        self.view = RegistryView()
        for change in city.registry_changes():
            if not drop(change):
                self.view.apply(change)
        self.rules = rules or RuleSet()
        self.suppressions = Suppressions(self.view)
        for f in city.filings():
            self.suppressions.set_filing(
                f.enterprise_id,
                str(uuid.uuid4()),
                approved=True,
                facility_ids=list(f.facility_ids),
                start=f.start,
                end=f.end,
                reason=f.reason,
            )
        for t in city.control_tasks():
            self.suppressions.set_task(
                t.enterprise_id, t.task_id, t.alert_id, t.measures, t.valid_from, t.valid_to
            )
        self.models = ModelCache(
            self.view, self.rules, lambda _: Learned(), today=lambda: city.start.date()
        )
        self.engine = Engine(self.rules, self.suppressions, group_ratio=group_ratio)
        self.eventtime = EventTime(
            self.engine,
            lateness_s=lateness_s,
            horizon_s=horizon_s,
            gap_s=float(self.rules.state["offline_min_s"]),
        )
        self.runtimes: dict[str, EnterpriseRuntime] = {}
        self.kept: dict[str, list[Sample]] = defaultdict(list)
        self.ops: list[dict[str, Any]] = []
        """Every alarm operation: {op, at (service clock), **alarm}."""
        self.states: list[Any] = []
        self.withdrawn: list[tuple[str, str, str, float]] = []
        self.replays = 0

    def runtime(self, enterprise_id: str) -> EnterpriseRuntime:
        return self.runtimes.setdefault(enterprise_id, EnterpriseRuntime(enterprise_id))

    def offer(self, readings: Iterable[PointReading], now: float) -> None:
        """Readings arriving together at service time `now` (one batch)."""
        by_enterprise: dict[str, list[Arrival]] = defaultdict(list)
        for reading in readings:
            by_enterprise[reading.enterprise_id].append(arrival(reading))
        for e, arrivals in sorted(by_enterprise.items()):
            self._work(e, now, lambda rt, model, fx, a=arrivals: self.eventtime.offer(
                rt, model, a, now, fx))  # fmt: skip

    def tick(self, now: float, enterprise_ids: Iterable[str] | None = None) -> None:
        """The timer at service time `now`."""
        for e in sorted(enterprise_ids or self.runtimes):
            self._work(e, now, lambda rt, model, fx: self.eventtime.advance(rt, model, now, fx))

    def _work(self, e: str, now: float, step: Callable[[Any, Any, Effects], None]) -> None:
        rt, model = self.runtime(e), self.models.get(e)
        assert model is not None
        fx = Effects()
        step(rt, model, fx)
        if self.eventtime.replay_due(rt, model, now):
            kept = self.kept[e] + [s for x, s in fx.retain if x == e]
            self.eventtime.replay(rt, model, kept, now, fx)
            self.replays += 1
        for x, s in fx.retain:
            self.kept[x].append(s)
        for x in fx.release:
            self.kept.pop(x, None)
        self.ops.extend({"op": op.op, "at": now, **op.alarm} for op in fx.alarms)
        self.states.extend(fx.states)
        self.withdrawn.extend(fx.withdrawn)

    def alarms(self) -> list[dict[str, Any]]:
        """The alarms as the alarm table would hold them (retracted ones left out)."""
        table: dict[str, dict[str, Any]] = {}
        for op in self.ops:
            if op["op"] == "retract":
                table[op["id"]]["retracted"] = op["reason"]
                continue
            row = table.setdefault(op["id"], {"explanation": op.get("explanation")})
            row.update({k: v for k, v in op.items() if k not in ("explanation", "op", "at")})
            if op["op"] == "open":
                row["opened_at"] = op["at"]
        return [a for a in table.values() if "retracted" not in a]

    def retracted(self) -> list[dict[str, Any]]:
        return [op for op in self.ops if op["op"] == "retract"]
