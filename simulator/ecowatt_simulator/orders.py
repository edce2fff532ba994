"""How listed enterprises respond to heavy-pollution-weather orders, and the truth of it.

The simulator follows `control.tasks` (or is handed the tasks) and every listed enterprise
responds in one of five ways, drawn from the seed (`OrderConfig.shares`, exact counts like
the fault kinds, or `behaviours` given per enterprise):

* `comply` — production winds down over the ramp (linearly, done 5 minutes early), then
  stands by (STOP), cuts its load by the required % + `comply_margin_pp` (LIMIT by
  reduction) or to `allowed_load_pct` − 10 points of rated (LIMIT by load), stands by inside
  the windows (OFFPEAK); control facilities go off 5 minutes after all the production they
  guard stopped, and back on 2 minutes before the task ends.
* `partial` — from the effective time: half load (STOP, and OFFPEAK inside its windows),
  only `partial_share` of the required cut, or allowed load + 25 points.
* `ignore` — nothing changes.
* `control_off` — production as usual, control facilities off for the whole task.
* `offline` — complies, and its loggers are silent from 30 minutes after the task starts to
  its end.

`OrderBook.hour_truth` says, for an enterprise and an hour, what the platform should
conclude, from the load model with and without the orders (the counterfactual). It applies
the bureau's rules (the control-plan service's `docs/control-plans.md`) to the physical
truth — what the facilities really drew — and marks an hour *ambiguous* when the truth sits
within a band around a tolerance or the hour straddles a shift edge, so that a scorer can
leave it out rather than count a coin toss.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ecowatt_kernel.bus import Bus, Record, Subscription
from ecowatt_kernel.contracts import ContractError, ControlTaskChanged, decode

from ecowatt_simulator.fleet import Fleet
from ecowatt_simulator.load import LoadModel
from ecowatt_simulator.timebase import LocalTime

__all__ = ["Behaviour", "HourTruth", "OrderBook", "OrderConfig"]

_logger = logging.getLogger("ecowatt.simulator")
MINUTE = 60.0


class Behaviour(StrEnum):
    COMPLY = "comply"
    PARTIAL = "partial"
    IGNORE = "ignore"
    CONTROL_OFF = "control_off"
    OFFLINE = "offline"


DEFAULT_SHARES = {"partial": 0.12, "ignore": 0.1, "control_off": 0.1, "offline": 0.06}
"""The rest comply."""


@dataclass
class OrderConfig:
    """Shares of listed enterprises per behaviour (the rest comply), or explicit ones."""

    shares: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SHARES))
    behaviours: Mapping[str, str] = field(default_factory=dict)
    seed: int | None = None
    comply_margin_pp: float = 10.0
    partial_share: float = 0.3
    control_stop_delay_s: float = 5 * MINUTE
    control_restart_lead_s: float = 2 * MINUTE
    offline_after_s: float = 30 * MINUTE

    def __post_init__(self) -> None:
        for name, share in self.shares.items():
            Behaviour(name)  # ValueError names an unknown behaviour
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"share of {name} must be within 0..1")
        for name in self.behaviours.values():
            Behaviour(name)


@dataclass(frozen=True)
class _Measure:
    action: str
    facilities: frozenset[str]  # production facilities it concerns
    effective_at: float
    reduction_pct: float | None
    allowed_load_pct: float | None
    windows: tuple[tuple[int, int], ...]  # local minutes of the day, end exclusive


@dataclass(frozen=True)
class _Task:
    task_id: str
    enterprise_id: str
    start: float
    end: float | None
    revision: int
    measures: tuple[_Measure, ...]

    def active(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


@dataclass
class HourTruth:
    """What the platform should conclude for one enterprise and hour."""

    enterprise_id: str
    hour_start: float
    behaviour: str
    status: str
    ambiguous: bool
    detail: dict[str, Any] = field(default_factory=dict)


class OrderBook:
    """The tasks the fleet's enterprises received, their behaviours, and the truth."""

    def __init__(
        self, fleet: Fleet, config: OrderConfig, *, seed: int, local: LocalTime | None = None
    ) -> None:
        self.fleet = fleet
        self.config = config
        self.seed = config.seed if config.seed is not None else seed
        self.local = local or LocalTime()
        self.tasks: dict[str, dict[str, _Task]] = {}
        self.received = 0
        self._assigned: dict[str, Behaviour] = {}
        self.changed = asyncio.Event()
        # Drawn over the whole fleet at once, so that the shares are exact counts.
        self.assign(fleet.enterprises)

    def update_fleet(self, fleet: Fleet) -> None:
        """Follow a changed archive; new enterprises get their behaviours drawn."""
        self.fleet = fleet
        self.assign(fleet.enterprises)

    # --------------------------------------------------------------------- behaviours

    def _draw(self, enterprise_id: str) -> float:
        digest = hashlib.sha256(f"{self.seed}|orders|{enterprise_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def assign(self, enterprise_ids: Iterable[str]) -> None:
        """Draw behaviours for these enterprises (exact counts by share, from the seed)."""
        pool = sorted((e for e in set(enterprise_ids) if e not in self._assigned), key=self._draw)
        for enterprise_id in list(pool):
            given = self.config.behaviours.get(enterprise_id)
            if given is not None:
                self._assigned[enterprise_id] = Behaviour(given)
                pool.remove(enterprise_id)
        start = 0
        for name, share in sorted(self.config.shares.items()):
            count = round(share * len(pool))
            for enterprise_id in pool[start : start + count]:
                self._assigned[enterprise_id] = Behaviour(name)
            start += count
        for enterprise_id in pool[start:]:
            self._assigned[enterprise_id] = Behaviour.COMPLY

    def behaviour(self, enterprise_id: str) -> Behaviour:
        if enterprise_id not in self._assigned:
            self.assign([enterprise_id])
        return self._assigned[enterprise_id]

    def behaviours(self) -> dict[str, str]:
        """Ground truth: the behaviour of every enterprise that received a task."""
        return {e: self.behaviour(e).value for e in sorted(self.tasks)}

    # ------------------------------------------------------------------------- tasks

    def apply(self, event: ControlTaskChanged) -> None:
        """Take in one task event (older revisions of a task are ignored)."""
        bucket = self.tasks.setdefault(event.enterprise_id, {})
        before = bucket.get(event.task_id)
        revision = event.revision or 0
        if before is not None and before.revision > revision:
            return
        measures = tuple(
            m for m in (self._measure(event.enterprise_id, raw) for raw in event.measures) if m
        )
        bucket[event.task_id] = _Task(
            event.task_id,
            event.enterprise_id,
            event.valid_from.timestamp(),
            event.valid_to.timestamp() if event.valid_to else None,
            revision,
            measures,
        )
        self.received += 1
        self.changed.set()

    def _measure(self, enterprise_id: str, raw: Mapping[str, Any]) -> _Measure | None:
        action = str(raw.get("action", "")).upper()
        if action not in ("STOP", "LIMIT", "OFFPEAK"):
            return None
        kind = raw.get("target_kind", "enterprise")
        targets = [str(t) for t in raw.get("target_ids") or []]
        production = [
            f.id
            for f in self.fleet.facilities_of_enterprise(enterprise_id)
            if f.kind == "production"
        ]
        if kind == "enterprise":
            facilities = set(production)
        elif kind == "facility":
            facilities = {t for t in targets if t in production}
        elif kind == "point":
            facilities = {
                p.facility_id
                for t in targets
                if (p := self.fleet.points.get(t)) is not None and p.facility_id in production
            }
        else:  # production lines are not in the simulator's archive: the whole enterprise
            facilities = set(production)
        windows = tuple(
            (_minutes(w["start"]), _minutes(w["end"])) for w in raw.get("windows") or []
        )
        effective = raw.get("effective_at")
        return _Measure(
            action,
            frozenset(facilities),
            datetime.fromisoformat(effective).timestamp() if effective else 0.0,
            raw.get("reduction_pct"),
            raw.get("allowed_load_pct"),
            windows,
        )

    def task_at(self, enterprise_id: str, t: float) -> _Task | None:
        found = [k for k in self.tasks.get(enterprise_id, {}).values() if k.active(t)]
        return max(found, key=lambda k: k.start) if found else None

    async def follow(self, bus: Bus, topic: str, *, group: str) -> Subscription:
        """Take in `control.tasks` from the start of the topic (a group of its own)."""

        async def handle(records: Sequence[Record]) -> None:
            for record in records:
                try:
                    event = decode(record).data
                except ContractError as exc:
                    _logger.warning("control.tasks: skipping a record: %s", exc)
                    continue
                if isinstance(event, ControlTaskChanged):
                    self.apply(event)

        return await bus.subscribe(group=group, topics=[topic], handler=handle)

    # --------------------------------------------------------------- load model hooks

    def _inside(self, measure: _Measure, t: float) -> bool:
        if not measure.windows:
            return True
        minute = int((self.local.local(t) % 86400) // 60)
        return any(
            (a <= minute < b) if a < b else (minute >= a or minute < b) for a, b in measure.windows
        )

    def production(
        self,
        facility_id: str,
        enterprise_id: str,
        t: float,
        *,
        power: float,
        standby: float,
        rated: float,
    ) -> float:
        """A running production facility's power under the orders and behaviour."""
        task = self.task_at(enterprise_id, t)
        if task is None:
            return power
        behaviour = self.behaviour(enterprise_id)
        if behaviour in (Behaviour.IGNORE, Behaviour.CONTROL_OFF):
            return power
        out = power
        for m in task.measures:
            if facility_id not in m.facilities:
                continue
            # Complying enterprises wind down over the ramp, linearly, to be done 5 min early.
            span = max(m.effective_at - 5 * MINUTE - task.start, 1.0)
            progress = min(1.0, max(0.0, (t - task.start) / span))
            if behaviour == Behaviour.PARTIAL:
                if t < m.effective_at:
                    continue
                if m.action in ("STOP", "OFFPEAK"):
                    if self._inside(m, t):
                        out = min(out, power * 0.5)
                elif m.reduction_pct is not None:
                    out = min(out, power * (1 - self.config.partial_share * m.reduction_pct / 100))
                elif m.allowed_load_pct is not None:
                    out = min(out, max(power * 0.9, (m.allowed_load_pct + 25) / 100 * rated))
                continue
            if m.action == "STOP":
                level = power * (1 - progress) + standby * progress
                out = min(out, standby if progress >= 1.0 else level)
            elif m.action == "OFFPEAK":
                if t >= m.effective_at and self._inside(m, t):
                    out = min(out, standby)
            elif m.reduction_pct is not None:
                cut = (m.reduction_pct + self.config.comply_margin_pp) / 100
                out = min(out, power * (1 - cut * progress))
            elif m.allowed_load_pct is not None:
                cap = max(m.allowed_load_pct - 10, 1) / 100 * rated
                out = min(out, power + (min(power, cap) - power) * progress)
        return out

    def _stopped_at(self, task: _Task, facility_id: str) -> float | None:
        """When a complying enterprise has this production facility stopped for the task."""
        for m in task.measures:
            if m.action == "STOP" and facility_id in m.facilities:
                return m.effective_at - 5 * MINUTE
        return None

    def control_off(self, control_id: str, enterprise_id: str, t: float) -> bool:
        """Whether a control facility is switched off by the enterprise's response."""
        task = self.task_at(enterprise_id, t)
        if task is None:
            return False
        behaviour = self.behaviour(enterprise_id)
        if behaviour == Behaviour.CONTROL_OFF:
            return True
        if behaviour not in (Behaviour.COMPLY, Behaviour.OFFLINE):
            return False
        if task.end is not None and t >= task.end - self.config.control_restart_lead_s:
            return False
        guarded = {
            pid
            for g in self.fleet.groups_of_enterprise(enterprise_id)
            if control_id in g.control_ids
            for pid in g.production_ids
        }
        if not guarded:
            return False
        stops = [self._stopped_at(task, pid) for pid in guarded]
        if any(s is None for s in stops):
            return False
        return t >= max(s for s in stops if s is not None) + self.config.control_stop_delay_s

    def offline_at(self, enterprise_id: str | None, t: float) -> tuple[float, float] | None:
        """The window in which an `offline` enterprise's loggers are silent."""
        if enterprise_id is None:
            return None
        task = self.task_at(enterprise_id, t)
        if task is None or self.behaviour(enterprise_id) != Behaviour.OFFLINE:
            return None
        start = task.start + self.config.offline_after_s
        end = task.end if task.end is not None else float("inf")
        return (start, end) if start <= t < end else None

    # ------------------------------------------------------------------------- truth

    def hour_truth(
        self,
        enterprise_id: str,
        hour_start: float,
        *,
        actual: LoadModel,
        counterfactual: LoadModel,
        thresholds: Mapping[str, float],
    ) -> HourTruth | None:
        """The status the platform should give (None: no task, or the hour is not fully
        under the measures: the ramp, the task's end, a change of task)."""
        task = self.task_at(enterprise_id, hour_start)
        end = hour_start + 3600
        if task is None or (task.end is not None and task.end < end):
            return None
        if any(m.effective_at > hour_start for m in task.measures):
            return None
        behaviour = self.behaviour(enterprise_id)
        truth = HourTruth(enterprise_id, hour_start, behaviour.value, "", False)
        offline = self.offline_at(enterprise_id, hour_start) or self.offline_at(
            enterprise_id, end - 1
        )
        if offline is not None:
            covered = min(offline[1], end) - max(offline[0], hour_start)
            truth.status = "离线/无法判定"
            truth.ambiguous = covered < 0.9 * 3600
            return truth
        minutes = [hour_start + 60 * m + 30 for m in range(60)]
        units = {u.id: u for u in actual.units_of_enterprise(enterprise_id)}

        def runs(model: LoadModel, unit_id: str) -> list[bool]:
            unit = units[unit_id]
            threshold = thresholds.get(unit_id, 0.2 * unit.rated)
            return [model.unit_power(unit, t) >= threshold for t in minutes]

        def energy(model: LoadModel, ids: Iterable[str]) -> float:
            return sum(model.unit_power(units[u], t) for u in ids for t in minutes) / 60

        production = [u for u, unit in units.items() if unit.kind == "production"]
        running = {u: runs(actual, u) for u in units}
        edges: list[str] = []
        pairs: list[tuple[str, str]] = []
        # KEEP_CONTROL_RUNNING, per control group.
        for g in self.fleet.groups_of_enterprise(enterprise_id):
            prods = [p for p in g.production_ids if p in units]
            ctrls = [c for c in g.control_ids if c in units]
            if not prods or not ctrls:
                continue
            producing = [i for i in range(60) if any(running[p][i] for p in prods)]
            combine = all if g.mode == "all" else any
            covered = sum(1 for i in producing if combine(running[c][i] for c in ctrls))
            share = covered / len(producing) if producing else 1.0
            if 7 <= len(producing) <= 13 or (len(producing) >= 10 and 0.7 <= share <= 0.9):
                edges.append(f"keep:{g.id}")
            violated = len(producing) >= 10 and share < 0.8
            pairs.append(("KEEP_CONTROL_RUNNING", "non_compliant" if violated else "compliant"))
        for m in task.measures:
            targets = [u for u in m.facilities if u in units]
            if not targets:
                continue
            window = [i for i in range(60) if not m.windows or self._inside(m, minutes[i])]
            if m.windows and len(window) < 30:
                continue
            if m.action in ("STOP", "OFFPEAK"):
                share = max(sum(running[u][i] for i in window) / len(window) for u in targets)
                if 0.02 <= share <= 0.1:
                    edges.append(f"{m.action}:share")
                pairs.append((m.action, "non_compliant" if share > 0.05 else "compliant"))
                continue
            normal = energy(counterfactual, targets)
            real = energy(actual, targets)
            if m.reduction_pct is not None:
                normal_running = (
                    sum(
                        any(c)
                        for c in zip(*(runs(counterfactual, u) for u in targets), strict=True)
                    )
                    / 60
                )
                if normal_running < 0.2:
                    pairs.append(("LIMIT", "compliant"))  # nothing to cut this hour
                    continue
                if normal_running < 0.8:
                    edges.append("LIMIT:shift_edge")
                reduction = (1 - real / normal) * 100 if normal > 0 else 0.0
                required = m.reduction_pct - 5
                if abs(reduction - required) < 5:
                    edges.append("LIMIT:tolerance")
                pairs.append(("LIMIT", "non_compliant" if reduction < required else "compliant"))
            elif m.allowed_load_pct is not None:
                rated = sum(units[u].rated for u in targets)
                limit = m.allowed_load_pct / 100 * rated * 1.05
                if abs(real - limit) < 0.05 * limit:
                    edges.append("LIMIT:load")
                pairs.append(("LIMIT", "non_compliant" if real > limit else "compliant"))
        if not pairs:
            return None
        producing_any = any(sum(running[u]) > 3 for u in production)
        if any(4 <= sum(running[u]) <= 8 for u in production):
            edges.append("producing_edge")
        truth.status = _status(pairs, producing=producing_any)
        truth.ambiguous = bool(edges)
        truth.detail = {"edges": edges, "verdicts": pairs}
        return truth


_STATUS_FOR = {
    "KEEP_CONTROL_RUNNING": "未开启治污设备",
    "STOP": "未响应停产",
    "OFFPEAK": "未响应停产",
    "LIMIT": "未响应减产",
}


def _status(pairs: Sequence[tuple[str, str]], *, producing: bool) -> str:
    violations = {_STATUS_FOR[a] for a, v in pairs if v == "non_compliant"}
    for status in ("未开启治污设备", "未响应停产", "未响应减产"):
        if status in violations:
            return status
    return "合规生产" if producing else "停工"


def _minutes(hhmm: str) -> int:
    hour, minute = hhmm.split(":")
    return int(hour) * 60 + int(minute)
