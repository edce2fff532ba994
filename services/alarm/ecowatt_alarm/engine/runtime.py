"""What the engine remembers and what it produces: the runtime of one enterprise (persisted as
JSON with every batch) and the effects of applying data to it (state changes, alarm
operations, learning statistics)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OFF", "ON", "AlarmOp", "Effects", "EnterpriseRuntime", "StateChange", "family"]

ON = ("running", "low_load")
OFF = ("stopped", "standby")


def family(state: str | None) -> str | None:
    """`on` for running states, `off` for stopped ones, else the state itself."""
    if state in ON:
        return "on"
    if state in OFF:
        return "off"
    return state


@dataclass
class StateChange:
    enterprise_id: str
    subject_kind: str
    subject_id: str
    state: str
    previous_state: str | None
    since: float
    reason: str
    evidence: dict[str, Any]


@dataclass
class AlarmOp:
    op: str  # open | update | escalate | recover | unsuppress
    alarm: dict[str, Any]


@dataclass
class Effects:
    states: list[StateChange] = field(default_factory=list)
    alarms: list[AlarmOp] = field(default_factory=list)
    stats: list[tuple[str, str, float]] = field(default_factory=list)  # (kind, id, value)

    def __bool__(self) -> bool:
        return bool(self.states or self.alarms)


class EnterpriseRuntime:
    """What the engine remembers about one enterprise (JSON-serialisable, minus the series)."""

    def __init__(self, enterprise_id: str, data: dict[str, Any] | None = None) -> None:
        d = data or {}
        self.enterprise_id = enterprise_id
        self.version: int = d.get("version", 0)
        self.clock: float = d.get("clock", 0.0)
        self.points: dict[str, dict[str, Any]] = d.get("points", {})
        self.facilities: dict[str, dict[str, Any]] = d.get("facilities", {})
        self.groups: dict[str, dict[str, Any]] = d.get("groups", {})
        self.conditions: dict[str, float] = d.get("conditions", {})
        self.alarms: dict[str, dict[str, Any]] = d.get("alarms", {})
        self.power_loss: dict[str, Any] = d.get("power_loss", {"on": False})
        self.series: dict[str, deque[tuple[float, float]]] = {}
        self.persisted: tuple[tuple[Any, ...], float] | None = None  # (signature, monotonic)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "clock": self.clock,
            "points": self.points,
            "facilities": self.facilities,
            "groups": self.groups,
            "conditions": self.conditions,
            "alarms": self.alarms,
            "power_loss": self.power_loss,
        }

    def signature(self) -> tuple[Any, ...]:
        """What must reach the database at once when it changes: states, pending changes,
        group flips, condition timers, open alarms, power loss. The rest (last values, the
        clock, day accumulators) may lag by `alarm_runtime_persist_s`."""
        return (
            tuple(sorted(self.conditions)),
            tuple(
                (k, a["level"], bool(a.get("suppressed"))) for k, a in sorted(self.alarms.items())
            ),
            bool(self.power_loss.get("on")),
            tuple(
                (pid, p.get("state"), (p.get("cand") or [None])[0])
                for pid, p in sorted(self.points.items())
            ),
            tuple(
                (gid, g["prod_on"], g["ctrl_on"], g["day"], g.get("ctrl_off_at"), g["ctrl_started"])
                for gid, g in sorted(self.groups.items())
            ),
            tuple((fid, f.get("state")) for fid, f in sorted(self.facilities.items())),
        )

    def point(self, point_id: str) -> dict[str, Any]:
        p = self.points.get(point_id)
        if p is None:
            p = self.points[point_id] = {"state": None, "since": None, "last_t": None}
        return p
