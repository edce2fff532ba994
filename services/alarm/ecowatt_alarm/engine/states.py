"""The state model (supervision.md §2.1): per-point states with hysteresis and confirmation,
silence (offline), power loss of the whole enterprise, and facility states from their key
points. Every change is a `StateChange` in the effects."""

from __future__ import annotations

from typing import Any

from ecowatt_alarm.engine.runtime import ON, Effects, EnterpriseRuntime, StateChange, family
from ecowatt_alarm.model import EnterpriseModel, FacilityModel, PointModel
from ecowatt_alarm.rules import RuleSet, fmt_time

__all__ = ["PointStates"]


class PointStates:
    """Classifies samples into point states and derives facility states."""

    def __init__(self, rules: RuleSet, tz: str) -> None:
        self.rules = rules
        self.tz = tz

    # ------------------------------------------------------------------------ point states

    def classify(
        self,
        rt: EnterpriseRuntime,
        pm: PointModel,
        pr: dict[str, Any],
        t: float,
        power: float,
        fx: Effects,
        changed: set[str],
    ) -> None:
        """One sample of a point: a state change once `confirm_samples` agree."""
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
        reason = self._reason(pm, cls, power)
        if current is None or current == "offline":
            self.set_point(rt, pm, cls, t, reason, power, fx, changed)
            pr.pop("cand", None)
            return
        if cls == current:
            pr.pop("cand", None)
            return
        key = family(cls) if family(cls) != family(current) else cls
        cand = pr.get("cand")
        if cand and cand[0] == key:
            cand[2] += 1
        else:
            cand = pr["cand"] = [key, t, 1]
        if cand[2] >= int(params["confirm_samples"]):
            since = cand[1]
            pr.pop("cand", None)
            self.set_point(rt, pm, cls, since, reason, power, fx, changed)

    @staticmethod
    def _reason(pm: PointModel, cls: str, power: float) -> str:
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

    def set_point(
        self,
        rt: EnterpriseRuntime,
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
        pr["state"], pr["since"], pr["state_p"] = state, since, power
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

    def sweep_offline(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        now: float,
        fx: Effects,
        changed: set[str],
    ) -> None:
        """Points without valid data for longer than `offline_after` at data time `now` go
        offline, from one expected interval after their last sample (or the end of the
        interval their last minute-data average covered)."""
        for pid, pm in model.points.items():
            pr = rt.points.get(pid)
            if pr is None or pr["last_t"] is None or pr["state"] == "offline":
                continue
            covered = max(pr["last_t"], pr.get("cover", 0.0))
            if now - covered <= pm.offline_after_s:
                continue
            since = covered + (pm.expected_interval_s if covered == pr["last_t"] else 0.0)
            reason = (
                f"超过 {pm.offline_after_s / 60:g} 分钟无有效数据（最后有效数据 "
                f"{fmt_time(pr['last_t'], self.tz)}）"
            )
            pr.pop("cand", None)
            self.set_point(rt, pm, "offline", since, reason, None, fx, changed)

    def power_loss(
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
            voltages = [v for _, pr in online if (v := pr.get("last_v")) is not None]
            if zero and voltages:
                zero = all(v < float(params["power_loss_v"]) for v in voltages)
            elif zero and not params["power_loss_without_voltage"]:
                zero = False
        if zero and not pl["on"]:
            rt.power_loss = {"on": True, "since": t, "restored": None}
            for pm, pr in online:
                pr.pop("cand", None)
                self.set_point(
                    rt,
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
                    self.classify(rt, pm, pr, t, pr["last_p"], fx, changed)

    # --------------------------------------------------------------------- facility states

    @staticmethod
    def facility_state(rt: EnterpriseRuntime, fm: FacilityModel) -> tuple[str | None, float]:
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

    def update_facilities(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, changed: set[str], fx: Effects
    ) -> None:
        for fid in sorted(changed):
            fm = model.facilities.get(fid)
            if fm is None:
                continue
            state, since = self.facility_state(rt, fm)
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
