"""Event time: what the engine may judge, and when (docs/alarm-rules.md §6).

Two clocks, each for one decision:

* **data time** — the engine's only clock: states, rules, durations, levels, OFFLINE;
* **the service clock** (`now`, the alarm service's own) — used for one decision only:
  that a device is *silent* (nothing received from it for `lateness_s`).

Per enterprise (`EnterpriseRuntime.seq`):

* every device's **watermark** — the newest data time received from it (any reading, valid
  or not) — and when it was last received;
* the **frontier** W — the data time up to which the enterprise has been judged:
  W = min over its devices of f(d), f(d) = watermark(d) while d reports, and max(watermark,
  now) once d is silent (or has never been heard of `lateness_s` after the enterprise first
  was). So an enterprise is judged at data time T only when each of its devices has reported
  past T or is known to be silent; a device whose data lag (a slow partition, a clock
  behind) holds its enterprise back instead of looking stopped or offline;
* **pending** samples, newer than W, applied in data-time order when W passes them;
* **late** samples, not newer than W: those inside a point's series already judged change
  nothing and are dropped (counted in `late_dropped`); those that extend a point's series or
  fall into one of its gaps re-open the judgement. They are kept, and once their device has
  caught up with W (or fallen silent again) the engine runs again from the **checkpoint**
  before them; what differs becomes amendments, retractions (with the reason kept) and late
  findings (`replay`);
* the **checkpoint** — a copy of the engine's state taken when W is about to pass the start
  of a device's gap (it fell silent, or its data jumped forward by more than `gap_s`). The
  samples applied after it are kept (`Effects.retain`, stored by the processor) until it is
  released: when every device reports again and no point has an unfilled gap since it, or
  when W is `horizon_s` past it. Late data older than the checkpoint (or with none) cannot be
  judged again and are counted in `late_unjudged`.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ecowatt_alarm.engine import Engine
from ecowatt_alarm.engine.lifecycle import SERIES_MAX
from ecowatt_alarm.engine.runtime import AlarmOp, Effects, EnterpriseRuntime, Sample, StateChange
from ecowatt_alarm.model import EnterpriseModel
from ecowatt_alarm.rules import fmt_time

__all__ = ["Arrival", "EventTime"]

MATCH_SLACK_S = 60.0
"""Alarms of the same rule and subject whose times differ by less are the same alarm."""


@dataclass(frozen=True)
class Arrival:
    """One reading of one point as it arrived: its device, data time and sample (None when
    the reading is invalid or carries no power: it still shows the device reporting)."""

    mn: str
    t: float
    sample: Sample | None


class EventTime:
    """Watermarks, frontier, lateness and re-judgement for the engine's enterprises."""

    def __init__(
        self,
        engine: Engine,
        *,
        lateness_s: float,
        horizon_s: float,
        gap_s: float,
        tz: str = "Asia/Shanghai",
    ) -> None:
        self.engine = engine
        self.lateness_s = lateness_s
        self.horizon_s = horizon_s
        self.gap_s = gap_s
        self.tz = tz

    # ------------------------------------------------------------------------- arrivals

    def offer(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        arrivals: Iterable[Arrival],
        now: float,
        fx: Effects,
    ) -> None:
        """Take readings that arrived at service time `now`, then judge what may be judged."""
        seq = rt.seq
        if seq["since"] is None:
            seq["since"] = now
        devices = seq["devices"]
        for arrival in arrivals:
            d = devices.get(arrival.mn)
            if d is None:
                d = devices[arrival.mn] = {"wm": arrival.t, "rx": now, "gap": None}
            else:
                if arrival.t > d["wm"] + self.gap_s and d["gap"] is None:
                    d["gap"] = d["wm"]  # its data jumped forward: judge the gap with a checkpoint
                d["wm"] = max(d["wm"], arrival.t)
                d["rx"] = now
            sample = arrival.sample
            if sample is None:
                continue
            frontier = seq["frontier"]
            if frontier is None or sample.t > frontier:
                seq["pending"].append(list(sample))
            else:
                self._late(rt, model, sample, fx)
        self.advance(rt, model, now, fx)

    def _late(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, sample: Sample, fx: Effects
    ) -> None:
        seq = rt.seq
        if sample.point_id not in model.points:
            return
        pr = rt.points.get(sample.point_id)
        last = pr.get("last_t") if pr else None
        in_gap = pr is not None and any(a < sample.t < b for a, b in pr.get("gaps", ()))
        if last is not None and sample.t <= last and not in_gap:
            seq["late_dropped"] += 1  # inside a series already judged: it changes nothing
            return
        checkpoint = seq["checkpoint"]
        if checkpoint is None or sample.t <= checkpoint["at"]:
            seq["late_unjudged"] += 1
            return
        fx.retain.append((rt.enterprise_id, sample))
        seq["replay_from"] = min(seq["replay_from"] or sample.t, sample.t)

    # --------------------------------------------------------------------------- frontier

    def silent(self, rt: EnterpriseRuntime, model: EnterpriseModel, now: float) -> list[str]:
        """Devices of the enterprise known to be silent at service time `now`."""
        seq = rt.seq
        out = []
        for mn in model.devices:
            d = seq["devices"].get(mn)
            rx = d["rx"] if d is not None else seq["since"]
            if rx is not None and now - rx > self.lateness_s:
                out.append(mn)
        return out

    def target(self, rt: EnterpriseRuntime, model: EnterpriseModel, now: float) -> float | None:
        """How far the enterprise may be judged at service time `now` (None: not yet)."""
        seq = rt.seq
        if seq["since"] is None or not model.devices:
            return None
        fronts = []
        for mn in model.devices:
            d = seq["devices"].get(mn)
            if d is None:
                if now - seq["since"] <= self.lateness_s:
                    return None  # not heard of yet: wait for it, up to the lateness bound
                fronts.append(now)
            elif now - d["rx"] > self.lateness_s:
                fronts.append(max(d["wm"], now))
            else:
                fronts.append(d["wm"])
        return min(fronts)

    def advance(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, now: float, fx: Effects
    ) -> None:
        """Move the frontier as far as the devices allow and judge up to it."""
        seq = rt.seq
        target = self.target(rt, model, now)
        frontier = seq["frontier"]
        if target is not None and (frontier is None or target > frontier):
            if seq["checkpoint"] is None:
                start = self._gap_start(rt, model, frontier, target, now)
                if start is not None:
                    self._move(rt, model, start, fx)
                    self._checkpoint(rt, start)
            self._move(rt, model, target, fx)
            seq["frontier"] = target
        for d in seq["devices"].values():
            if d["gap"] is not None and seq["frontier"] is not None and d["gap"] < seq["frontier"]:
                d["gap"] = None
        self._maybe_release(rt, model, now, fx)

    def _gap_start(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        frontier: float | None,
        target: float,
        now: float,
    ) -> float | None:
        """Where a checkpoint is needed before moving to `target`: the start of a gap the
        frontier is about to pass — a silent device's last data, a device not heard of yet
        (its first data may still come), a device whose data jumped forward."""
        seq = rt.seq
        first = min((p[0] for p in seq["pending"]), default=target) - 1.0
        floor = frontier if frontier is not None else first
        starts = []
        silent = set(self.silent(rt, model, now))
        for mn in silent:
            d = seq["devices"].get(mn)
            if d is None:
                starts.append(floor)
            elif floor <= d["wm"] < target:
                starts.append(d["wm"])
        for d in seq["devices"].values():
            if d["gap"] is not None and d["gap"] < target:
                starts.append(max(d["gap"], floor))
        return min(starts) if starts else None

    def _move(self, rt: EnterpriseRuntime, model: EnterpriseModel, to: float, fx: Effects) -> None:
        seq = rt.seq
        pending = seq["pending"]
        due = sorted((p for p in pending if p[0] <= to), key=lambda p: (p[0], p[1]))
        seq["pending"] = [p for p in pending if p[0] > to]
        self._run(rt, model, [Sample(*p) for p in due], to, fx)

    def _run(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        samples: Sequence[Sample],
        until: float,
        fx: Effects,
    ) -> None:
        checkpoint = rt.seq["checkpoint"]
        alarms, states = len(fx.alarms), len(fx.states)
        applied = self.engine.apply_all(rt, model, samples, fx)
        if checkpoint is not None:
            fx.retain.extend((rt.enterprise_id, sample) for sample in applied)
        self.engine.advance_to(rt, model, until, fx)
        if checkpoint is not None:
            _note(checkpoint, fx.alarms[alarms:], fx.states[states:])

    # ------------------------------------------------------------------------ checkpoint

    def _checkpoint(self, rt: EnterpriseRuntime, at: float) -> None:
        rt.seq["checkpoint"] = {
            "at": at,
            "runtime": copy.deepcopy(rt.engine_state()),
            "alarms": {a["id"]: _active_record(a) for a in rt.alarms.values()},
            "states": [],
        }

    def _maybe_release(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, now: float, fx: Effects
    ) -> None:
        seq = rt.seq
        checkpoint = seq["checkpoint"]
        if checkpoint is None or seq["replay_from"] is not None:
            return
        frontier = seq["frontier"] or checkpoint["at"]
        if frontier - checkpoint["at"] <= self.horizon_s:
            if self.silent(rt, model, now):
                return
            devices = seq["devices"]
            if any(mn in devices and devices[mn]["wm"] < frontier for mn in model.devices):
                return
            since = checkpoint["at"]
            for pr in rt.points.values():
                if pr.get("state") == "offline" or any(b > since for _, b in pr.get("gaps", ())):
                    return
        seq["checkpoint"] = None
        fx.release.append(rt.enterprise_id)

    # ----------------------------------------------------------------------- re-judgement

    def replay_due(self, rt: EnterpriseRuntime, model: EnterpriseModel, now: float) -> bool:
        """Late data wait, and every reporting device has caught up with the frontier."""
        seq = rt.seq
        if seq["replay_from"] is None or seq["checkpoint"] is None:
            return False
        frontier = seq["frontier"]
        silent = set(self.silent(rt, model, now))
        devices = seq["devices"]
        return all(
            devices[mn]["wm"] >= frontier
            for mn in model.devices
            if mn in devices and mn not in silent
        )

    def replay(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        kept: Iterable[Sample],
        now: float,
        fx: Effects,
    ) -> None:
        """Judge again from the checkpoint with every sample kept since (the late ones
        included) and turn the differences into amendments, retractions and late findings."""
        seq = rt.seq
        checkpoint = seq["checkpoint"]
        frontier = seq["frontier"]
        assert checkpoint is not None and frontier is not None
        late_from = seq["replay_from"]
        base = EnterpriseRuntime(rt.enterprise_id, copy.deepcopy(checkpoint["runtime"]))
        unique = {(s.t, s.point_id): s for s in kept if checkpoint["at"] < s.t <= frontier}
        sub = Effects()
        self.engine.apply_all(base, model, [unique[key] for key in sorted(unique)], sub)
        self.engine.advance_to(base, model, frontier, sub)
        reason = (
            f"依据迟到/补传数据（数据时间自 {fmt_time(late_from, self.tz)} 起）重新判定"
            if late_from is not None
            else "依据迟到/补传数据重新判定"
        )
        ops, mapping, records = _diff(checkpoint, base, sub, reason, self.tz)
        for active in base.alarms.values():
            active["id"] = mapping.get(active["id"], active["id"])
        states, withdrawn = _diff_states(rt.enterprise_id, checkpoint["states"], sub.states)
        rt.restore(base.engine_state())
        for pid, series in base.series.items():
            older = [x for x in rt.series.get(pid, ()) if x[0] <= checkpoint["at"]]
            rt.series[pid] = deque(older + list(series), maxlen=SERIES_MAX)
        checkpoint["alarms"] = records
        checkpoint["states"] = [_state_key(c) for c in sub.states]
        seq["replay_from"] = None
        # What this batch decided before the re-judgement about the alarms it retracts or
        # amends is superseded (an alarm opened and retracted at once is never shown).
        retracted = {op.alarm["id"] for op in ops if op.op == "retract"}
        amended = {op.alarm["id"] for op in ops if op.op == "amend"}
        fx.alarms[:] = [
            op
            for op in fx.alarms
            if op.alarm["id"] not in retracted
            and (op.alarm["id"] not in amended or op.op == "open")
        ]
        fx.alarms.extend(ops)
        fx.states.extend(states)
        fx.withdrawn.extend(withdrawn)


# ------------------------------------------------------------------------------ records


def _active_record(active: dict[str, Any]) -> dict[str, Any]:
    """The record of an alarm the engine holds open (its `rt.alarms` entry)."""
    return {
        "rule_code": active["rule"],
        "subject_id": active["subject_id"],
        "subject_kind": active["subject_kind"],
        "group_id": active.get("group_id"),
        "first_at": active["first_at"],
        "last_at": active["last_at"],
        "recovered_at": None,
        "active": True,
        "level": active["level"],
        "suppressed": (active.get("suppressed") or {}).get("kind"),
    }


def _fold(record: dict[str, Any] | None, op: AlarmOp) -> dict[str, Any]:
    """A record after one alarm operation."""
    a = op.alarm
    out = dict(record or {})
    out.update(
        rule_code=a["rule_code"],
        subject_id=a["subject_id"],
        subject_kind=a["subject_kind"],
        group_id=a.get("group_id"),
        first_at=a["first_at"],
        last_at=a["last_at"],
        recovered_at=a.get("recovered_at"),
        active=bool(a.get("active", True)),
        level=a["level"],
        suppressed=(a.get("suppressed_by") or {}).get("kind"),
    )
    if op.op == "retract":
        out["retracted"] = True
    return out


def _note(
    checkpoint: dict[str, Any], ops: Sequence[AlarmOp], states: Sequence[StateChange]
) -> None:
    """Remember what was decided after the checkpoint (what a re-judgement compares with)."""
    records = checkpoint["alarms"]
    for op in ops:
        records[op.alarm["id"]] = _fold(records.get(op.alarm["id"]), op)
    checkpoint["states"].extend(_state_key(c) for c in states)


def _state_key(c: StateChange) -> list[Any]:
    return [c.subject_kind, c.subject_id, c.state, round(c.since, 3)]


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    a_end = a.get("recovered_at") or a["last_at"]
    b_end = b.get("recovered_at") or b["last_at"]
    return bool(a["first_at"] <= b_end + MATCH_SLACK_S and b["first_at"] <= a_end + MATCH_SLACK_S)


def _differs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if abs(a["first_at"] - b["first_at"]) > MATCH_SLACK_S or a["level"] != b["level"]:
        return True
    if bool(a["active"]) != bool(b["active"]) or a.get("suppressed") != b.get("suppressed"):
        return True
    ra, rb = a.get("recovered_at"), b.get("recovered_at")
    return (ra is None) != (rb is None) or (
        ra is not None and rb is not None and abs(ra - rb) > MATCH_SLACK_S
    )


def _diff(
    checkpoint: dict[str, Any], base: EnterpriseRuntime, sub: Effects, reason: str, tz: str
) -> tuple[list[AlarmOp], dict[str, str], dict[str, dict[str, Any]]]:
    """(operations, replayed id → original id, the records now) of a re-judgement."""
    original: dict[str, dict[str, Any]] = checkpoint["alarms"]
    carried = {a["id"] for a in checkpoint["runtime"]["alarms"].values()}
    replayed: dict[str, dict[str, Any]] = {
        a["id"]: _active_record(a) for a in checkpoint["runtime"]["alarms"].values()
    }
    last_op: dict[str, dict[str, Any]] = {}
    opened: dict[str, dict[str, Any]] = {}
    for op in sub.alarms:
        rid = op.alarm["id"]
        replayed[rid] = _fold(replayed.get(rid), op)
        last_op[rid] = op.alarm
        if op.op == "open":
            opened[rid] = op.alarm
    candidates = [
        oid for oid, r in original.items() if oid not in carried and not r.get("retracted")
    ]
    mapping: dict[str, str] = {}
    for rid in sorted(
        (r for r in replayed if r not in carried), key=lambda r: replayed[r]["first_at"]
    ):
        mine = replayed[rid]
        for oid in candidates:
            theirs = original[oid]
            if (
                oid not in mapping.values()
                and theirs["rule_code"] == mine["rule_code"]
                and theirs["subject_id"] == mine["subject_id"]
                and _overlap(mine, theirs)
            ):
                mapping[rid] = oid
                break
    ops: list[AlarmOp] = []
    records: dict[str, dict[str, Any]] = {}
    kept = set(mapping.values())
    for oid in candidates:
        if oid not in kept:
            theirs = original[oid]
            ops.append(AlarmOp("retract", {
                "id": oid,
                "rule_code": theirs["rule_code"],
                "subject_id": theirs["subject_id"],
                "reason": f"{reason}：按数据时序不会产生此报警，予以撤回。",
            }))  # fmt: skip
            records[oid] = {**theirs, "retracted": True, "active": False}
    for rid, mine in replayed.items():
        target = rid if rid in carried else mapping.get(rid)
        if target is None:
            continue
        records[target] = mine
        if _differs(original.get(target, mine), mine):
            alarm = dict(last_op.get(rid) or {})
            alarm.update(_amended(original.get(target, mine), mine, reason, tz), id=target)
            ops.append(AlarmOp("amend", alarm))
    for rid, mine in replayed.items():
        if rid in carried or rid in mapping:
            continue
        alarm = dict(opened.get(rid) or last_op[rid])
        alarm.update(
            last_at=mine["last_at"],
            level=mine["level"],
            active=mine["active"],
            recovered_at=mine["recovered_at"],
            late=True,
        )
        if not mine["active"] and rid in last_op and last_op[rid] is not alarm:
            alarm["closing_explanation"] = last_op[rid]["explanation"]
        ops.append(AlarmOp("open", alarm))
        records[rid] = mine
    return ops, mapping, records


def _amended(before: dict[str, Any], after: dict[str, Any], reason: str, tz: str) -> dict[str, Any]:
    def when(t: float | None) -> str:
        return "—" if t is None else fmt_time(t, tz)

    changes = []
    if abs(before["first_at"] - after["first_at"]) > MATCH_SLACK_S:
        changes.append(f"首次异常时间 {when(before['first_at'])} → {when(after['first_at'])}")
    if before.get("recovered_at") != after.get("recovered_at"):
        changes.append(
            f"恢复时间 {when(before.get('recovered_at'))} → {when(after.get('recovered_at'))}"
        )
    if before["level"] != after["level"]:
        changes.append(f"级别 {before['level']} → {after['level']}")
    return {
        "first_at": after["first_at"],
        "last_at": after["last_at"],
        "recovered_at": after["recovered_at"],
        "active": after["active"],
        "level": after["level"],
        "amendment": f"{reason}：{'；'.join(changes) or '时间与级别修正'}。",
        "before": {k: before.get(k) for k in ("first_at", "recovered_at", "level", "active")},
    }


def _diff_states(
    enterprise_id: str, original: list[list[Any]], replayed: Sequence[StateChange]
) -> tuple[list[StateChange], list[tuple[str, str, str, float]]]:
    """State changes the re-judgement adds, and those it no longer holds."""
    before = {tuple(k) for k in original}
    after = {tuple(_state_key(c)) for c in replayed}
    added = [c for c in replayed if tuple(_state_key(c)) not in before]
    withdrawn = [(enterprise_id, k[1], k[2], k[3]) for k in original if tuple(k) not in after]
    return added, withdrawn
