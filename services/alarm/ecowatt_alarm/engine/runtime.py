"""What the engine remembers and what it produces: the runtime of one enterprise (persisted as
JSON with every batch) and the effects of applying data to it (state changes, alarm
operations, learning statistics)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "ENGINE_FIELDS",
    "OFF",
    "ON",
    "AlarmOp",
    "Effects",
    "EnterpriseRuntime",
    "Sample",
    "StateChange",
    "family",
]

ON = ("running", "low_load")
OFF = ("stopped", "standby")


def family(state: str | None) -> str | None:
    """`on` for running states, `off` for stopped ones, else the state itself."""
    if state in ON:
        return "on"
    if state in OFF:
        return "off"
    return state


class Sample(NamedTuple):
    """One valid sample of one point, as the engine applies it (data time `t`, UTC seconds).

    `interval` is 0 for real-time data (a sample at `t`) and the length in seconds of the
    interval a minute-data average covers (HJ 212 2051: `t` is the interval's start)."""

    t: float
    point_id: str
    power: float
    voltage: float | None
    interval: float = 0.0


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
    """What happens to one alarm. `op`: open, update, escalate, recover, unsuppress (the
    engine), amend or retract (a re-judgement after late data)."""

    op: str
    alarm: dict[str, Any]


@dataclass
class Effects:
    states: list[StateChange] = field(default_factory=list)
    alarms: list[AlarmOp] = field(default_factory=list)
    stats: list[tuple[str, str, float, float]] = field(default_factory=list)
    """Running samples for learning: (kind, subject id, value, data time)."""
    withdrawn: list[tuple[str, str, str, float]] = field(default_factory=list)
    """State changes a re-judgement no longer holds: (enterprise, subject, state, since)."""
    retain: list[tuple[str, Sample]] = field(default_factory=list)
    """Samples applied after an enterprise's checkpoint: kept for re-judgement."""
    release: list[str] = field(default_factory=list)
    """Enterprises whose checkpoint was dropped: their kept samples may go."""

    def __bool__(self) -> bool:
        return bool(self.states or self.alarms or self.withdrawn)


class EnterpriseRuntime:
    """What the engine remembers about one enterprise (JSON-serialisable, minus the series)."""

    def __init__(self, enterprise_id: str, data: dict[str, Any] | None = None) -> None:
        d = data or {}
        self.enterprise_id = enterprise_id
        self.version: int = d.get("version", 0)
        self.clock: float = d.get("clock", 0.0)
        """Data time of the engine's last evaluation (a sample or a grid step)."""
        self.points: dict[str, dict[str, Any]] = d.get("points", {})
        self.facilities: dict[str, dict[str, Any]] = d.get("facilities", {})
        self.groups: dict[str, dict[str, Any]] = d.get("groups", {})
        self.conditions: dict[str, float] = d.get("conditions", {})
        self.alarms: dict[str, dict[str, Any]] = d.get("alarms", {})
        self.power_loss: dict[str, Any] = d.get("power_loss", {"on": False})
        self.seq: dict[str, Any] = d.get("seq") or new_sequence()
        """Event-time bookkeeping (`engine.eventtime`): watermarks, frontier, pending samples,
        checkpoint."""
        self.series: dict[str, deque[tuple[float, float]]] = {}
        self.persisted: tuple[tuple[Any, ...], float] | None = None  # (signature, monotonic)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "seq": self.seq, **self.engine_state()}

    def engine_state(self) -> dict[str, Any]:
        """What the engine's decisions depend on (a checkpoint copies it)."""
        return {name: getattr(self, name) for name in ENGINE_FIELDS}

    def restore(self, state: dict[str, Any]) -> None:
        """Take the engine's state from `state` (a re-judgement's result)."""
        for name in ENGINE_FIELDS:
            setattr(self, name, state[name])

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
            self.seq.get("checkpoint") is not None,
            self.seq.get("replay_from"),
        )

    def point(self, point_id: str) -> dict[str, Any]:
        p = self.points.get(point_id)
        if p is None:
            p = self.points[point_id] = {"state": None, "since": None, "last_t": None}
        return p


ENGINE_FIELDS = (
    "clock",
    "points",
    "facilities",
    "groups",
    "conditions",
    "alarms",
    "power_loss",
)


def new_sequence() -> dict[str, Any]:
    """Empty event-time bookkeeping of an enterprise."""
    return {
        "devices": {},
        "frontier": None,
        "pending": [],
        "since": None,
        "checkpoint": None,
        "replay_from": None,
        "late_dropped": 0,
        "late_unjudged": 0,
    }
