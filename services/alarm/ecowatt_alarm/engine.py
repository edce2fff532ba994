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
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ecowatt_alarm.model import EnterpriseModel, FacilityModel, GroupModel, PointModel
from ecowatt_alarm.rules import LEVEL_NAMES, RuleConfig, RuleSet, fmt_kw, fmt_time, local_day

__all__ = ["AlarmOp", "Effects", "Engine", "EnterpriseRuntime", "StateChange", "Suppressor"]

ON = ("running", "low_load")
OFF = ("stopped", "standby")
SERIES_SPACING_S = 55.0
SERIES_MAX = 360

Suppressor = Callable[[str, str, tuple[str, ...], float, float], dict[str, Any] | None]
"""(enterprise_id, rule_code, facility_ids, start, end) → why it is suppressed, or None."""


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


def _family(state: str | None) -> str | None:
    if state in ON:
        return "on"
    if state in OFF:
        return "off"
    return state


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
        self.suppressor = suppressor
        self.tz = tz
        self.group_ratio = group_ratio
        self.findings = findings

    # ------------------------------------------------------------------------- entry points

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
        self._record_series(rt, point_id, t, power)
        if pr["state"] in ON and pm.kind in ("production", "control", "total"):
            fx.stats.append(("point", point_id, power))
        rt.clock = max(rt.clock, t)
        now = rt.clock
        changed: set[str] = set()
        if pr["state"] != "power_loss":
            self._classify(rt, model, pm, pr, t, power, fx, changed)
        self._power_loss(rt, model, t, fx, changed)
        # Live data (arriving close to its data time): a point is offline only if it also
        # stopped *arriving*, so a device whose clock lags the others' is not taken for
        # silent. A replay (data far behind arrival) can only be judged in data time.
        live = received - rt.clock <= float(self.rules.state["offline_min_s"])
        self._sweep_offline(rt, model, now, received if live else None, fx, changed)
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
        self._sweep_offline(rt, model, wall_now, wall_now, fx, changed)
        if changed or any(p.get("state") == "offline" for p in rt.points.values()):
            self._update_facilities(rt, model, changed, fx)
            self._evaluate_devices(rt, model, max(rt.clock, wall_now), fx)

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

    # ------------------------------------------------------------------------ point states

    def _classify(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        pm: PointModel,
        pr: dict[str, Any],
        t: float,
        power: float,
        fx: Effects,
        changed: set[str],
    ) -> None:
        params = self.rules.state
        current = pr["state"]
        on_now = current in ON
        threshold = pm.threshold_kw * (float(params["off_ratio"]) if on_now else 1.0)
        if power >= threshold:
            cls = "running"
            if pm.low_load_kw is not None and power < pm.low_load_kw:
                cls = "low_load"
        else:
            cls = "standby" if power >= pm.idle_kw else "stopped"
        reason = self._point_reason(pm, cls, power)
        if current is None or current == "offline":
            self._set_point(rt, model, pm, cls, t, reason, power, fx, changed)
            pr.pop("cand", None)
            return
        if cls == current:
            pr.pop("cand", None)
            return
        key = _family(cls) if _family(cls) != _family(current) else cls
        cand = pr.get("cand")
        if cand and cand[0] == key:
            cand[2] += 1
        else:
            cand = pr["cand"] = [key, t, 1]
        if cand[2] >= int(params["confirm_samples"]):
            since = cand[1]
            pr.pop("cand", None)
            self._set_point(rt, model, pm, cls, since, reason, power, fx, changed)

    def _point_reason(self, pm: PointModel, cls: str, power: float) -> str:
        if cls == "low_load":
            return (
                f"功率 {power:.1f} kW 低于低负荷阈值 {pm.low_load_kw:.1f} kW（{pm.low_load_basis}）"
            )
        if cls == "running":
            return f"功率 {power:.1f} kW ≥ {pm.describe_threshold()}"
        if cls == "standby":
            return (
                f"功率 {power:.1f} kW 介于停运阈值 {pm.idle_kw:.2f} kW 与 "
                f"{pm.describe_threshold()}之间"
            )
        return f"功率 {power:.1f} kW 低于停运阈值 {pm.idle_kw:.2f} kW"

    def _set_point(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        pm: PointModel,
        state: str,
        since: float,
        reason: str,
        power: float | None,
        fx: Effects,
        changed: set[str],
    ) -> None:
        pr = rt.point(pm.id)
        previous = pr["state"]
        if previous == state:
            return
        pr["state"], pr["since"] = state, since
        evidence: dict[str, Any] = {
            "threshold_kw": round(pm.threshold_kw, 3),
            "threshold_source": pm.threshold_source,
            "idle_kw": round(pm.idle_kw, 3),
        }
        if power is not None:
            evidence["power_kw"] = round(power, 3)
        if pm.low_load_kw is not None:
            evidence["low_load_kw"] = round(pm.low_load_kw, 3)
        fx.states.append(
            StateChange(rt.enterprise_id, "point", pm.id, state, previous, since, reason, evidence)
        )
        if pm.facility_id:
            changed.add(pm.facility_id)

    def _sweep_offline(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        now: float,
        wall_now: float | None,
        fx: Effects,
        changed: set[str],
    ) -> None:
        for pid, pm in model.points.items():
            pr = rt.points.get(pid)
            if pr is None or pr["last_t"] is None or pr["state"] == "offline":
                continue
            if now - pr["last_t"] <= pm.offline_after_s:
                continue
            if wall_now is not None and wall_now - pr.get("last_rx", 0.0) <= pm.offline_after_s:
                continue  # data arrived recently (a replay or a late device): not silent
            since = pr["last_t"] + pm.expected_interval_s
            reason = (
                f"超过 {pm.offline_after_s / 60:g} 分钟无有效数据（最后有效数据 "
                f"{fmt_time(pr['last_t'], self.tz)}）"
            )
            pr.pop("cand", None)
            self._set_point(rt, model, pm, "offline", since, reason, None, fx, changed)

    def _power_loss(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        t: float,
        fx: Effects,
        changed: set[str],
    ) -> None:
        """POWER_LOSS: every online point reads ~0 kW (and ~0 V where voltage is reported)."""
        params = self.rules.state
        online = []
        for pid, pm in model.points.items():
            pr = rt.points.get(pid)
            if pr is None or pr["last_t"] is None or t - pr["last_t"] > pm.offline_after_s:
                continue
            online.append((pm, pr))
        pl = rt.power_loss
        if len(online) < 2 and not any(pm.kind == "total" for pm, _ in online):
            zero = False
        else:
            zero = all(pr["last_p"] < pm.idle_kw for pm, pr in online)
            voltages = [pr.get("last_v") for _, pr in online if pr.get("last_v") is not None]
            if zero and voltages:
                zero = all(v < float(params["power_loss_v"]) for v in voltages)
            elif zero and not params["power_loss_without_voltage"]:
                zero = False
        if zero and not pl["on"]:
            rt.power_loss = {"on": True, "since": t, "restored": None}
            for pm, pr in online:
                pr.pop("cand", None)
                self._set_point(
                    rt,
                    model,
                    pm,
                    "power_loss",
                    t,
                    "企业全部点位功率/电压同时归零（停电）",
                    pr["last_p"],
                    fx,
                    changed,
                )
        elif not zero and pl["on"]:
            rt.power_loss = {"on": False, "since": pl.get("since"), "restored": t}
            for pm, pr in online:
                if pr["state"] == "power_loss":
                    pr["state"] = None  # re-classified from its sample without confirmation
                    self._classify(rt, model, pm, pr, t, pr["last_p"], fx, changed)

    # --------------------------------------------------------------------- facility states

    def _facility_state(self, rt: EnterpriseRuntime, fm: FacilityModel) -> tuple[str | None, float]:
        states: list[tuple[str, float]] = []
        for pid in fm.key_point_ids:
            pr = rt.points.get(pid)
            if pr and pr["state"]:
                states.append((pr["state"], pr["since"]))
        if not states:
            return None, 0.0
        names = {s for s, _ in states}

        def since_of(*wanted: str) -> float:
            return max(t for s, t in states if s in wanted)

        if "power_loss" in names:
            return "power_loss", since_of("power_loss")
        if fm.kind == "control":
            for s in ("stopped", "standby", "offline", "low_load"):
                if s in names:
                    return s, since_of(s)
            return "running", since_of("running")
        if names & set(ON):
            return "running", min(t for s, t in states if s in ON)
        for s in ("offline", "standby", "stopped"):
            if s in names:
                return s, since_of(s)
        return None, 0.0

    def _update_facilities(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, changed: set[str], fx: Effects
    ) -> None:
        for fid in sorted(changed):
            fm = model.facilities.get(fid)
            if fm is None:
                continue
            state, since = self._facility_state(rt, fm)
            fr = rt.facilities.setdefault(fid, {"state": None, "since": None})
            if state is None or state == fr["state"]:
                continue
            previous = fr["state"]
            fr["state"], fr["since"] = state, since
            points = {
                pid: {"state": rt.points[pid]["state"], "power_kw": rt.points[pid].get("last_p")}
                for pid in fm.key_point_ids
                if pid in rt.points
            }
            kind = "治污设施" if fm.kind == "control" else "产污设施"
            rule = "全部关键点位运行才算运行" if fm.kind == "control" else "任一点位运行即运行"
            fx.states.append(
                StateChange(
                    rt.enterprise_id,
                    "facility",
                    fid,
                    state,
                    previous,
                    since,
                    f"{kind}{fm.name}：{rule}",
                    {"points": points},
                )
            )

    # ------------------------------------------------------------------------------ rules

    def _evaluate(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        now: float,
        fx: Effects,
        changed: set[str],
    ) -> None:
        self._update_facilities(rt, model, changed, fx)
        for group in model.groups:
            self._evaluate_group(rt, model, group, now, fx)
        self._evaluate_total(rt, model, now, fx)
        self._evaluate_devices(rt, model, now, fx)

    def _fac(self, rt: EnterpriseRuntime, fid: str) -> tuple[str | None, float]:
        fr = rt.facilities.get(fid)
        return (fr["state"], fr["since"]) if fr else (None, 0.0)

    def _evaluate_group(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        g: GroupModel,
        now: float,
        fx: Effects,
    ) -> None:
        if not g.production_ids or not g.control_ids:
            return
        gr = rt.groups.setdefault(
            g.id,
            {
                "prod_on": False,
                "prod_since": None,
                "ctrl_on": False,
                "ctrl_since": None,
                "run_start": None,
                "ctrl_started": False,
                "ctrl_off_at": None,
                "last_eval": None,
                "day": None,
                "prod_s": 0.0,
                "overlap_s": 0.0,
            },
        )
        prod = [self._fac(rt, f) for f in g.production_ids]
        ctrl = [self._fac(rt, f) for f in g.control_ids]
        prod_on = any(s == "running" for s, _ in prod)
        if g.mode == "all":
            ctrl_on = all(s in ON for s, _ in ctrl)
            ctrl_down = any(s in OFF for s, _ in ctrl)
            ctrl_offline = not ctrl_down and any(s == "offline" for s, _ in ctrl)
        else:
            ctrl_on = any(s in ON for s, _ in ctrl)
            ctrl_down = not ctrl_on and any(s in OFF for s, _ in ctrl)
            ctrl_offline = not ctrl_on and not ctrl_down and any(s == "offline" for s, _ in ctrl)

        # R4 accumulators (with the flags as they were up to now), split by local day.
        day = local_day(now, self.tz)
        if gr["day"] is not None and gr["day"] != day:
            self._finish_day(rt, model, g, gr, now, fx)
        if gr["day"] != day:
            gr["day"], gr["prod_s"], gr["overlap_s"] = day, 0.0, 0.0
            gr["day_first"] = gr["day_last"] = None
        if gr["last_eval"] is not None and now > gr["last_eval"]:
            dt = min(now - gr["last_eval"], 900.0)
            if gr["prod_on"] and not gr.get("ctrl_offline"):
                gr["day_first"] = gr.get("day_first") or gr["last_eval"]
                gr["day_last"] = now
                gr["prod_s"] += dt
                if gr["ctrl_on"]:
                    gr["overlap_s"] += dt
        gr["last_eval"] = max(gr["last_eval"] or now, now)
        gr["ctrl_offline"] = ctrl_offline

        # Flips, in the order they happened (since times).
        flips: list[tuple[float, str, bool]] = []
        if prod_on != gr["prod_on"]:
            times = [t for s, t in prod if (s == "running") == prod_on and s is not None]
            flips.append(
                ((min(times) if prod_on else max(times)) if times else now, "prod", prod_on)
            )
        if ctrl_on != gr["ctrl_on"]:
            wanted_on = [t for s, t in ctrl if s in ON]
            wanted_off = [t for s, t in ctrl if s not in ON and s is not None]
            if ctrl_on:
                times = wanted_on
                at = (max(times) if g.mode == "all" else min(times)) if times else now
            else:
                times = wanted_off
                at = (min(times) if g.mode == "all" else max(times)) if times else now
            flips.append((at, "ctrl", ctrl_on))
        for at, what, on in sorted(flips, key=lambda f: (f[0], f[1] == "prod")):
            if what == "prod":
                gr["prod_on"], gr["prod_since"] = on, at
                if on:
                    gr["run_start"], gr["ctrl_started"], gr["ctrl_off_at"] = (
                        at,
                        gr["ctrl_on"],
                        None,
                    )
                else:
                    self._check_r3(rt, model, g, gr, at, fx)
                    gr["run_start"], gr["ctrl_off_at"] = None, None
            else:
                gr["ctrl_on"], gr["ctrl_since"] = on, at
                if gr["prod_on"]:
                    if on:
                        if not gr["ctrl_started"]:
                            self._check_r2(rt, model, g, gr, at, fx)
                        gr["ctrl_started"], gr["ctrl_off_at"] = True, None
                    elif gr["ctrl_started"]:
                        gr["ctrl_off_at"] = at

        facilities = g.production_ids + g.control_ids
        # R1: production running, control stopped/standby.
        r1 = prod_on and ctrl_down and not ctrl_on
        start = max(gr["prod_since"] or now, gr["ctrl_since"] or now) if r1 else None
        self._track(
            rt,
            model,
            "R1",
            "group",
            g.id,
            g.id,
            facilities,
            r1,
            start,
            now,
            fx,
            lambda a: self._explain_r1(rt, model, g, a),
        )
        # R5: both running, control at low load or its power ratio collapsed.
        r5, r5_detail = False, {}
        r5_start = now
        if prod_on and ctrl_on:
            lows = [f for f in g.control_ids if self._fac(rt, f)[0] == "low_load"]
            on_ctrl = [f for f in g.control_ids if self._fac(rt, f)[0] in ON]
            if lows and (g.mode == "all" or len(lows) == len(on_ctrl)):
                r5, r5_detail = True, {"low_load": lows}
                r5_start = max([gr["prod_since"] or now] + [self._fac(rt, f)[1] for f in lows])
            else:
                median = self.group_ratio(g.id)
                ratio = self._ratio(rt, model, g)
                if ratio is not None:
                    fx.stats.append(("group", g.id, ratio))
                if (
                    median
                    and ratio is not None
                    and ratio < float(self.rules["R5"].p("ratio_drop")) * median
                ):
                    r5, r5_detail = True, {"ratio": ratio, "ratio_median": median}
        self._track(
            rt,
            model,
            "R5",
            "group",
            g.id,
            g.id,
            facilities,
            r5,
            r5_start if r5 else None,
            now,
            fx,
            lambda a: self._explain_r5(rt, model, g, a, r5_detail),
        )
        # R6: control offline while production runs.
        r6 = prod_on and ctrl_offline
        start6 = max(gr["prod_since"] or now, gr["ctrl_since"] or now) if r6 else None
        self._track(
            rt,
            model,
            "R6",
            "group",
            g.id,
            g.id,
            facilities,
            r6,
            start6,
            now,
            fx,
            lambda a: self._explain_r6(rt, model, g, a),
        )

    def _ratio(self, rt: EnterpriseRuntime, model: EnterpriseModel, g: GroupModel) -> float | None:
        def total(fids: tuple[str, ...]) -> float:
            s = 0.0
            for fid in fids:
                fm = model.facilities.get(fid)
                for pid in fm.point_ids if fm else []:
                    pr = rt.points.get(pid)
                    if pr and pr.get("last_p") is not None:
                        s += pr["last_p"]
            return s

        prod = total(g.production_ids)
        return total(g.control_ids) / prod if prod > 0 else None

    def _evaluate_total(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, now: float, fx: Effects
    ) -> None:
        production = model.production_point_ids
        for pid in model.total_point_ids:
            pm = model.points[pid]
            pr = rt.points.get(pid)
            states = [rt.points.get(p, {}).get("state") for p in production]
            holds = False
            if pr and pr["state"] in ON and production and all(s in OFF for s in states):
                ref = pm.reference_kw or pm.threshold_kw
                holds = pr["last_p"] > float(self.rules["R7"].p("total_ratio")) * ref
            self._track(
                rt,
                model,
                "R7",
                "point",
                pid,
                None,
                (),
                holds,
                now if holds else None,
                now,
                fx,
                lambda a, pm=pm: self._explain_r7(rt, model, pm, a),
            )

    def _evaluate_devices(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, now: float, fx: Effects
    ) -> None:
        for mn, pids in model.devices.items():
            states = [rt.points.get(p, {}) for p in pids]
            holds = bool(states) and all(s.get("state") == "offline" for s in states)
            start = max(s["since"] for s in states) if holds else None
            facilities = tuple(
                sorted({f for p in pids if (f := model.points[p].facility_id) is not None})
            )
            self._track(
                rt,
                model,
                "OFFLINE",
                "device",
                mn,
                None,
                facilities,
                holds,
                start,
                now,
                fx,
                lambda a, mn=mn: self._explain_offline(rt, model, mn, a),
            )

    # ----------------------------------------------------------------------- event rules

    def _check_r2(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        g: GroupModel,
        gr: dict[str, Any],
        at: float,
        fx: Effects,
    ) -> None:
        start = gr["run_start"]
        if start is None:
            return
        delay_min = (at - start) / 60
        if delay_min <= g.start_lead_min:
            return
        rule = self.rules["R2"]
        level = rule.level_for(delay_min)
        detail = {
            "production_start": start,
            "control_start": at,
            "delay_min": delay_min,
            "start_lead_min": g.start_lead_min,
        }
        text = (
            f"治理线组“{g.name}”：产污设施于 {fmt_time(start, self.tz)} 启动，治污设施直到 "
            f"{fmt_time(at, self.tz)} 才开启，延迟 {delay_min:.0f} 分钟，超过允许的 "
            f"{g.start_lead_min} 分钟。"
        )
        self._event(
            rt,
            model,
            rule,
            "group",
            g.id,
            g.id,
            g.production_ids + g.control_ids,
            start,
            at,
            level,
            text,
            detail,
            fx,
        )

    def _check_r3(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        g: GroupModel,
        gr: dict[str, Any],
        at: float,
        fx: Effects,
    ) -> None:
        off = gr["ctrl_off_at"]
        if off is None or not gr["ctrl_started"] or gr["ctrl_on"]:
            return
        early_min = (at - off) / 60
        if early_min <= g.stop_lag_min:
            return
        rule = self.rules["R3"]
        level = rule.level_for(early_min)
        detail = {
            "control_stop": off,
            "production_stop": at,
            "early_min": early_min,
            "stop_lag_min": g.stop_lag_min,
        }
        text = (
            f"治理线组“{g.name}”：治污设施于 {fmt_time(off, self.tz)} 关闭，产污设施运行至 "
            f"{fmt_time(at, self.tz)} 才停机，治污提前 {early_min:.0f} 分钟关闭，超过允许的 "
            f"{g.stop_lag_min} 分钟。"
        )
        self._event(
            rt,
            model,
            rule,
            "group",
            g.id,
            g.id,
            g.production_ids + g.control_ids,
            off,
            at,
            level,
            text,
            detail,
            fx,
        )

    def _finish_day(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        g: GroupModel,
        gr: dict[str, Any],
        now: float,
        fx: Effects,
    ) -> None:
        rule = self.rules["R4"]
        prod_h = gr["prod_s"] / 3600
        if prod_h < float(rule.p("min_production_h")):
            return
        coverage = gr["overlap_s"] / gr["prod_s"]
        if coverage >= float(rule.p("min_coverage")):
            return
        levels = rule.p("level_coverage")
        level = 1 + sum(1 for c in levels[1:] if coverage < c)
        detail = {
            "day": gr["day"],
            "production_h": round(prod_h, 2),
            "overlap_h": round(gr["overlap_s"] / 3600, 2),
            "coverage": round(coverage, 4),
            "min_coverage": rule.p("min_coverage"),
        }
        text = (
            f"治理线组“{g.name}” {gr['day']}：产污运行 {prod_h:.1f} 小时，其中治污同步运行 "
            f"{gr['overlap_s'] / 3600:.1f} 小时，覆盖率 {coverage * 100:.1f}%，低于 "
            f"{float(rule.p('min_coverage')) * 100:g}%。"
        )
        subject = f"{g.id}@{gr['day']}"
        self._event(
            rt,
            model,
            rule,
            "group",
            subject,
            g.id,
            g.production_ids + g.control_ids,
            gr.get("day_first") or gr["last_eval"] - gr["prod_s"],
            gr.get("day_last") or min(now, gr["last_eval"]),
            min(level, 3),
            text,
            detail,
            fx,
        )

    def _event(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        rule: RuleConfig,
        subject_kind: str,
        subject_id: str,
        group_id: str | None,
        facilities: tuple[str, ...],
        first: float,
        last: float,
        level: int,
        text: str,
        detail: dict[str, Any],
        fx: Effects,
    ) -> None:
        if not rule.enabled:
            return
        suppressed = self._suppressed(rt, rule.code, facilities, first, last)
        alarm = self._new_alarm(
            rt,
            model,
            rule,
            subject_kind,
            subject_id,
            group_id,
            facilities,
            first,
            level,
            suppressed,
        )
        alarm.update(last_at=last, active=False, recovered_at=last, detail=detail)
        alarm["explanation"] = self._header(rule, level, suppressed) + text
        alarm["series"] = self._series(rt, model, facilities, first - 1800, last)
        fx.alarms.append(AlarmOp("open", alarm))

    # --------------------------------------------------------------- condition lifecycle

    def _track(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        code: str,
        subject_kind: str,
        subject_id: str,
        group_id: str | None,
        facilities: tuple[str, ...],
        holds: bool,
        start: float | None,
        now: float,
        fx: Effects,
        explain: Callable[[dict[str, Any]], str],
    ) -> None:
        rule = self.rules[code]
        key = f"{code}|{subject_id}"
        active = rt.alarms.get(key)
        if not rule.enabled and active is None:
            rt.conditions.pop(key, None)
            return
        if holds:
            if active is not None:
                active.pop("clean_since", None)
                active["last_at"] = now
                duration_min = (now - active["first_at"]) / 60
                level = rule.level_for(duration_min)
                op = None
                if active.get("suppressed") and not self._suppressed(
                    rt, code, facilities, now, now
                ):
                    active["suppressed"] = None
                    op = "unsuppress"
                elif level > active["level"]:
                    op = "escalate"
                elif now - active["emitted_at"] >= 60 * float(
                    rule.params.get("update_every_min", 15)
                ):
                    op = "update"
                active["level"] = max(level, active["level"])
                if op:
                    self._emit(rt, model, rule, active, op, facilities, explain, fx)
                return
            since = rt.conditions.setdefault(key, start if start is not None else now)
            confirm = float(rule.params.get("confirm_min", rule.params.get("open_after_min", 0)))
            if now - since < confirm * 60:
                return
            rt.conditions.pop(key, None)
            suppressed = self._suppressed(rt, code, facilities, since, now)
            level = rule.level_for((now - since) / 60)
            alarm = self._new_alarm(
                rt,
                model,
                rule,
                subject_kind,
                subject_id,
                group_id,
                facilities,
                since,
                level,
                suppressed,
            )
            alarm.update(last_at=now, active=True)
            rt.alarms[key] = {
                "id": alarm["id"],
                "rule": code,
                "version": rule.version,
                "subject_kind": subject_kind,
                "subject_id": subject_id,
                "group_id": group_id,
                "first_at": since,
                "last_at": now,
                "level": level,
                "suppressed": suppressed,
                "emitted_at": now,
                "facilities": list(facilities),
            }
            self._emit(rt, model, rule, rt.alarms[key], "open", facilities, explain, fx)
            return
        rt.conditions.pop(key, None)
        if active is None:
            return
        clean = active.setdefault("clean_since", now)
        if now - clean >= 60 * float(rule.params.get("recover_min", 0)):
            active["recovered_at"] = clean
            self._emit(rt, model, rule, active, "recover", facilities, explain, fx)
            del rt.alarms[key]

    def _emit(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        rule: RuleConfig,
        active: dict[str, Any],
        op: str,
        facilities: tuple[str, ...],
        explain: Callable[[dict[str, Any]], str],
        fx: Effects,
    ) -> None:
        active["emitted_at"] = active["last_at"]
        alarm = {
            "id": active["id"],
            "rule_code": rule.code,
            "rule_version": active["version"],
            "rule_name": rule.name,
            "enterprise_id": rt.enterprise_id,
            "subject_kind": active["subject_kind"],
            "subject_id": active["subject_id"],
            "group_id": active["group_id"],
            "facility_ids": list(facilities),
            "point_ids": self._points_of(model, facilities, active),
            "level": active["level"],
            "first_at": active["first_at"],
            "last_at": active["last_at"],
            "active": op != "recover",
            "recovered_at": active.get("recovered_at"),
            "suppressed_by": active.get("suppressed"),
            "detail": {},
        }
        alarm["explanation"] = self._header(rule, active["level"], active.get("suppressed")) + (
            explain(alarm)
        )
        if op == "recover":
            alarm["explanation"] += f" 已于 {fmt_time(active['recovered_at'], self.tz)} 自动恢复。"
        end = active["last_at"] if op != "recover" else active["recovered_at"]
        alarm["series"] = self._series(
            rt, model, facilities, active["first_at"] - 1800, end, alarm["point_ids"]
        )
        findings = self.findings(rt.enterprise_id, alarm["point_ids"])
        if findings:
            alarm["detail"]["quality_findings"] = findings
        fx.alarms.append(AlarmOp(op, alarm))

    def _new_alarm(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        rule: RuleConfig,
        subject_kind: str,
        subject_id: str,
        group_id: str | None,
        facilities: tuple[str, ...],
        first: float,
        level: int,
        suppressed: dict[str, Any] | None,
    ) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "rule_code": rule.code,
            "rule_version": rule.version,
            "rule_name": rule.name,
            "enterprise_id": rt.enterprise_id,
            "subject_kind": subject_kind,
            "subject_id": subject_id,
            "group_id": group_id,
            "facility_ids": list(facilities),
            "point_ids": self._points_of(
                model, facilities, {"subject_id": subject_id, "subject_kind": subject_kind}
            ),
            "level": level,
            "first_at": first,
            "suppressed_by": suppressed,
            "detail": {},
        }

    def _points_of(
        self, model: EnterpriseModel, facilities: Iterable[str], active: dict[str, Any]
    ) -> list[str]:
        if active["subject_kind"] == "point":
            return [active["subject_id"]]
        if active["subject_kind"] == "device":
            return list(model.devices.get(active["subject_id"], []))
        out: list[str] = []
        for fid in facilities:
            fm = model.facilities.get(fid)
            if fm:
                out.extend(fm.point_ids)
        return out

    def _suppressed(
        self,
        rt: EnterpriseRuntime,
        code: str,
        facilities: tuple[str, ...],
        start: float,
        end: float,
    ) -> dict[str, Any] | None:
        pl = rt.power_loss
        grace = 60 * float(self.rules.state["power_loss_grace_min"])
        since = pl.get("since")
        until = None if pl.get("on") else (pl.get("restored") or 0.0) + grace
        if since is not None and since <= end and (until is None or start <= until):
            return {
                "kind": "power_loss",
                "since": since,
                "restored": pl.get("restored"),
                "reason": "企业停电（全部点位功率/电压归零）或复电后宽限期内",
            }
        return self.suppressor(rt.enterprise_id, code, facilities, start, end)

    def _header(self, rule: RuleConfig, level: int, suppressed: dict[str, Any] | None) -> str:
        head = f"【{rule.code} {rule.name} v{rule.version}｜{LEVEL_NAMES.get(level, level)}】"
        if suppressed:
            head += f"（已抑制：{suppressed.get('reason', suppressed.get('kind'))}）"
        return head

    # ------------------------------------------------------------------------- evidence

    def _record_series(self, rt: EnterpriseRuntime, pid: str, t: float, p: float) -> None:
        series = rt.series.get(pid)
        if series is None:
            series = rt.series[pid] = deque(maxlen=SERIES_MAX)
        if series and t - series[-1][0] < SERIES_SPACING_S:
            return
        series.append((t, round(p, 3)))

    def _series(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        facilities: Iterable[str],
        start: float,
        end: float,
        point_ids: list[str] | None = None,
    ) -> dict[str, list[tuple[float, float]]]:
        pids = (
            point_ids
            if point_ids is not None
            else self._points_of(model, facilities, {"subject_kind": "group", "subject_id": ""})
        )
        return {
            pid: [(t, p) for t, p in rt.series.get(pid, ()) if start <= t <= end + 1]
            for pid in pids
        }

    # ----------------------------------------------------------------------- explanations

    def _describe_points(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, facilities: Iterable[str]
    ) -> str:
        parts = []
        for fid in facilities:
            fm = model.facilities.get(fid)
            if fm is None:
                continue
            state = rt.facilities.get(fid, {}).get("state")
            points = []
            for pid in fm.key_point_ids:
                pm = model.points[pid]
                pr = rt.points.get(pid, {})
                value = fmt_kw(pr.get("last_p"))
                if pr.get("state") == "offline":
                    value = f"离线（最后数据 {value}，{fmt_time(pr['last_t'], self.tz)}）"
                points.append(f"{pm.name} {value}，{pm.describe_threshold()}")
            parts.append(f"{fm.name}[{_STATE_ZH.get(state or '', state)}]（{'；'.join(points)}）")
        return "、".join(parts)

    def _explain_r1(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, g: GroupModel, a: dict[str, Any]
    ) -> str:
        confirm = self.rules["R1"].p("confirm_min")
        return (
            f"治理线组“{g.name}”（{'全部' if g.mode == 'all' else '任一'}治污设施须运行）："
            f"产污设施 {self._describe_points(rt, model, g.production_ids)} 运行，治污设施 "
            f"{self._describe_points(rt, model, g.control_ids)} 未运行；首次异常时间 "
            f"{fmt_time(a['first_at'], self.tz)}，已持续 {(a['last_at'] - a['first_at']) / 60:.0f} "
            f"分钟（确认时长 {confirm} 分钟）。"
        )

    def _explain_r5(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        g: GroupModel,
        a: dict[str, Any],
        detail: dict[str, Any],
    ) -> str:
        lows = []
        for fid in g.control_ids:
            fm = model.facilities.get(fid)
            for pid in fm.key_point_ids if fm else []:
                pm = model.points[pid]
                if pm.low_load_kw is not None:
                    lows.append(
                        f"{pm.name} {fmt_kw(rt.points.get(pid, {}).get('last_p'))} < 低负荷阈值 "
                        f"{pm.low_load_kw:.1f} kW（{pm.low_load_basis}）"
                    )
        why = "；".join(lows)
        if "ratio" in detail:
            why = (
                f"治污/产污功率比 {detail['ratio']:.3f} 低于其 30 日中位数 "
                f"{detail['ratio_median']:.3f} 的 {self.rules['R5'].p('ratio_drop')} 倍"
            )
        return (
            f"治理线组“{g.name}”：产污与治污均在运行，但治污疑似低负荷/空转（{why}）；自 "
            f"{fmt_time(a['first_at'], self.tz)} 起持续 "
            f"{(a['last_at'] - a['first_at']) / 60:.0f} 分钟。"
        )

    def _explain_r6(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, g: GroupModel, a: dict[str, Any]
    ) -> str:
        return (
            f"治理线组“{g.name}”：产污设施 {self._describe_points(rt, model, g.production_ids)} "
            f"在线运行，而治污设施 {self._describe_points(rt, model, g.control_ids)} 点位离线；自 "
            f"{fmt_time(a['first_at'], self.tz)} 起持续 {(a['last_at'] - a['first_at']) / 60:.0f} "
            f"分钟，疑似人为断开监测。"
        )

    def _explain_r7(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, pm: PointModel, a: dict[str, Any]
    ) -> str:
        ref = pm.reference_kw or pm.threshold_kw
        ratio = float(self.rules["R7"].p("total_ratio"))
        prods = "、".join(model.points[p].name for p in model.production_point_ids)
        return (
            f"企业总电“{pm.name}”功率 {fmt_kw(rt.points.get(pm.id, {}).get('last_p'))}，高于其运行"
            f"参考功率 {ref:.1f} kW 的 {ratio * 100:g}%（{ratio * ref:.1f} kW），"
            f"而全部受监控产污点位"
            f"（{prods}）均停运；自 {fmt_time(a['first_at'], self.tz)} 起持续 "
            f"{(a['last_at'] - a['first_at']) / 60:.0f} 分钟，疑似存在未计量的生产回路。"
        )

    def _explain_offline(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, mn: str, a: dict[str, Any]
    ) -> str:
        names = "、".join(model.points[p].name for p in model.devices.get(mn, []))
        hours = (a["last_at"] - a["first_at"]) / 3600
        return (
            f"设备 {mn}（点位：{names}）自 {fmt_time(a['first_at'], self.tz)} 起无有效数据，已离线 "
            f"{hours:.1f} 小时（2 小时报警，24 小时、72 小时升级）。"
        )


_STATE_ZH = {
    "offline": "离线",
    "power_loss": "停电",
    "stopped": "停运",
    "standby": "待机",
    "running": "运行",
    "low_load": "低负荷",
    "": "未知",
}
