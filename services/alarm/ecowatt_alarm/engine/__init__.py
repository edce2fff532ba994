"""The evaluation engine: per-point and per-facility states, rules R1–R7 and OFFLINE.

Pure logic, no I/O, one clock: **data time**. One `EnterpriseRuntime` holds everything the
engine remembers about an enterprise (serialisable to JSON and persisted with every batch, so
a restart or another replica continues where this one stopped). The engine is a function of
the samples it is given, in data-time order: it evaluates the enterprise at every sample and
at every full minute of data time (`GRID_S`) up to where it is told to go, so the same samples
give the same states and alarms however, and in whatever bursts, they arrived. Which samples
it is given, and how far it may go, is decided by `eventtime.EventTime` (watermarks per
device, the frontier, the lateness bound, re-judgement of late data).

Outputs are `Effects`: state changes (→ `facility.states`) and alarm operations (→ the alarm
table and `alarms`); the processor persists both in one transaction with the runtime.

Modules: `runtime` (what is remembered and produced), `states` (point and facility states),
`correlation` (the rules), `lifecycle` (alarm merging, levels, facets, recovery, suppression,
evidence), `explain` (the Chinese explanations), `eventtime` (what may be judged when).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ecowatt_alarm.engine.correlation import Correlation
from ecowatt_alarm.engine.explain import Explanations
from ecowatt_alarm.engine.lifecycle import AlarmLifecycle, Suppressor
from ecowatt_alarm.engine.runtime import (
    ON,
    AlarmOp,
    Effects,
    EnterpriseRuntime,
    Sample,
    StateChange,
)
from ecowatt_alarm.engine.states import PointStates
from ecowatt_alarm.model import EnterpriseModel
from ecowatt_alarm.rules import RuleSet

__all__ = [
    "GRID_S",
    "AlarmOp",
    "Effects",
    "Engine",
    "EnterpriseRuntime",
    "Sample",
    "StateChange",
    "Suppressor",
]

GRID_S = 60.0
"""Besides every sample, the engine evaluates at every full minute of data time, so that
silence is judged (offline, OFFLINE, a condition that keeps holding) without data, and the
evaluation times do not depend on how the data arrived."""

GAP_KEEP = 16
"""Gaps remembered per point (recent ones): late data that fall into one are re-judged."""


class Engine:
    """Applies samples and the passing of data time to enterprise runtimes."""

    def __init__(
        self,
        rules: RuleSet,
        suppressor: Suppressor,
        *,
        tz: str = "Asia/Shanghai",
        group_ratio: Callable[[str], float | None] = lambda _: None,
        findings: Callable[[str, Iterable[str]], list[dict[str, Any]]] = lambda _e, _s: [],
    ) -> None:
        self.rules = rules
        self.tz = tz
        self.states = PointStates(rules, tz)
        self.lifecycle = AlarmLifecycle(rules, suppressor, tz, findings)
        self.correlation = Correlation(
            rules, tz, self.lifecycle, Explanations(rules, tz), group_ratio
        )

    def apply(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, sample: Sample, fx: Effects
    ) -> bool:
        """One valid sample; False when it is not applied (see `apply_all`)."""
        return bool(self.apply_all(rt, model, [sample], fx))

    def apply_all(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        samples: Sequence[Sample],
        fx: Effects,
    ) -> list[Sample]:
        """Samples in data-time order (none before the last evaluation): the samples of one
        moment are one observation — every point takes its sample, then the enterprise is
        evaluated once. The samples applied (not: unknown points, or not newer than their
        point's last sample)."""
        applied: list[Sample] = []
        i, n = 0, len(samples)
        while i < n:
            t = samples[i].t
            if rt.clock and t > rt.clock:
                self._grid(rt, model, t, fx, inclusive=False)
            changed: set[str] = set()
            took = False
            while i < n and samples[i].t == t:
                if self._take(rt, model, samples[i], fx, changed):
                    applied.append(samples[i])
                    took = True
                i += 1
            if took:
                rt.clock = max(rt.clock, t)
                self.states.power_loss(rt, model, t, fx, changed)
                self.states.sweep_offline(rt, model, t, fx, changed)
                self._evaluate(rt, model, t, fx, changed)
        return applied

    def _take(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        sample: Sample,
        fx: Effects,
        changed: set[str],
    ) -> bool:
        pm = model.points.get(sample.point_id)
        if pm is None:
            return False
        t = sample.t
        pr = rt.point(sample.point_id)
        if pr["last_t"] is not None and t <= pr["last_t"]:
            return False
        previous = max(pr["last_t"] or t, pr.get("cover", 0.0))
        if pr["last_t"] is not None and t - previous > pm.offline_after_s:
            gaps = pr.setdefault("gaps", [])
            gaps.append([previous, t])
            del gaps[:-GAP_KEEP]
        pr["last_t"], pr["last_p"], pr["last_v"] = t, sample.power, sample.voltage
        if sample.interval:
            pr["cover"] = t + sample.interval
        else:
            pr.pop("cover", None)
        self.lifecycle.record_series(rt, sample.point_id, t, sample.power)
        if pr["state"] in ON and pm.kind in ("production", "control", "total"):
            fx.stats.append(("point", sample.point_id, sample.power, t))
        if pr["state"] != "power_loss":
            self.states.classify(rt, pm, pr, t, sample.power, fx, changed)
        return True

    def advance_to(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, t: float, fx: Effects
    ) -> None:
        """Let data time pass to `t` without data: evaluate every full minute up to `t`."""
        if rt.clock and t > rt.clock:
            self._grid(rt, model, t, fx, inclusive=True)

    def _grid(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        until: float,
        fx: Effects,
        *,
        inclusive: bool,
    ) -> None:
        g = math.floor(rt.clock / GRID_S) * GRID_S + GRID_S
        while g < until or (inclusive and g == until):
            changed: set[str] = set()
            self.states.sweep_offline(rt, model, g, fx, changed)
            self._evaluate(rt, model, g, fx, changed)
            rt.clock = g
            g += GRID_S

    def _evaluate(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        now: float,
        fx: Effects,
        changed: set[str],
    ) -> None:
        self.states.update_facilities(rt, model, changed, fx)
        for group in model.groups:
            self.correlation.evaluate_group(rt, model, group, now, fx)
        self.correlation.evaluate_total(rt, model, now, fx)
        self.correlation.evaluate_devices(rt, model, now, fx)
