"""The evaluation engine: per-point and per-facility states, rules R1–R7 and OFFLINE.

Pure logic, no I/O. One `EnterpriseRuntime` holds everything the engine remembers about an
enterprise (serialisable to JSON and persisted with every batch, so a restart or another
replica continues where this one stopped). The engine works in *data time*: a reading at
`data_time` t advances the enterprise's clock to t, so a replay of history raises the same
alarms as the live stream, and an alarm fires on the reading that completes its confirmation
window (within a minute of the data). A timer calls `tick(now)` so that silence is an event
too (points go offline, device-offline alarms open and escalate).

Outputs are `Effects`: state changes (→ `facility.states`) and alarm operations (→ the alarm
table and `alarms`); the processor persists both in one transaction with the runtime.

Modules: `runtime` (what is remembered and produced), `states` (point and facility states),
`correlation` (the rules), `lifecycle` (alarm merging, levels, recovery, suppression,
evidence), `explain` (the Chinese explanations).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ecowatt_alarm.engine.correlation import Correlation
from ecowatt_alarm.engine.explain import Explanations
from ecowatt_alarm.engine.lifecycle import AlarmLifecycle, Suppressor
from ecowatt_alarm.engine.runtime import ON, AlarmOp, Effects, EnterpriseRuntime, StateChange
from ecowatt_alarm.engine.states import PointStates
from ecowatt_alarm.model import EnterpriseModel
from ecowatt_alarm.rules import RuleSet

__all__ = ["AlarmOp", "Effects", "Engine", "EnterpriseRuntime", "StateChange", "Suppressor"]


class Engine:
    """Applies readings and ticks to enterprise runtimes."""

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

    def apply_reading(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        point_id: str,
        t: float,
        power: float,
        voltage: float | None,
        received: float,
        fx: Effects,
    ) -> bool:
        """One valid sample of one point; False when it is a duplicate or older than the last."""
        pm = model.points.get(point_id)
        if pm is None:
            return False
        pr = rt.point(point_id)
        if pr["last_t"] is not None and t <= pr["last_t"]:
            return False
        pr["last_t"], pr["last_p"], pr["last_v"], pr["last_rx"] = t, power, voltage, received
        self.lifecycle.record_series(rt, point_id, t, power)
        if pr["state"] in ON and pm.kind in ("production", "control", "total"):
            fx.stats.append(("point", point_id, power))
        rt.clock = max(rt.clock, t)
        now = rt.clock
        changed: set[str] = set()
        if pr["state"] != "power_loss":
            self.states.classify(rt, pm, pr, t, power, fx, changed)
        self.states.power_loss(rt, model, t, fx, changed)
        # Live data (arriving close to its data time): a point is offline only if it also
        # stopped *arriving*, so a device whose clock lags the others' is not taken for
        # silent. A replay (data far behind arrival) can only be judged in data time.
        live = received - rt.clock <= float(self.rules.state["offline_min_s"])
        self.states.sweep_offline(rt, model, now, received if live else None, fx, changed)
        self._evaluate(rt, model, now, fx, changed)
        return True

    def tick(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, wall_now: float, fx: Effects
    ) -> None:
        """The timer: silence is an event too (offline points, OFFLINE alarms and escalation).

        Only what silence decides is evaluated here, at wall time; the enterprise's data clock
        is left alone, so a device whose clock lags is not taken for offline by the others'
        readings, and the correlation rules keep running in data time."""
        changed: set[str] = set()
        self.states.sweep_offline(rt, model, wall_now, wall_now, fx, changed)
        if changed or any(p.get("state") == "offline" for p in rt.points.values()):
            self.states.update_facilities(rt, model, changed, fx)
            self.correlation.evaluate_devices(rt, model, max(rt.clock, wall_now), fx)

    def next_deadline(self, rt: EnterpriseRuntime, model: EnterpriseModel) -> float | None:
        """The wall time at which `tick` may change something (None: nothing pending)."""
        deadlines = []
        for pid, pr in rt.points.items():
            pm = model.points.get(pid)
            if pm is None or pr.get("state") == "offline" or pr.get("last_rx") is None:
                continue
            deadlines.append(max(pr["last_rx"], pr["last_t"]) + pm.offline_after_s)
        if any(p.get("state") == "offline" for p in rt.points.values()):
            deadlines.append(0.0)
        return min(deadlines) if deadlines else None

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
