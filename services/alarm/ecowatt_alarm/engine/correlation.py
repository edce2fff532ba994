"""Rule evaluation (supervision.md §2.3): production–control correlation per control group
(R1–R6), unmonitored load on the incoming line (R7) and device offline (OFFLINE), from the
point and facility states the state model keeps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_alarm.engine.explain import Explanations
from ecowatt_alarm.engine.lifecycle import AlarmLifecycle
from ecowatt_alarm.engine.runtime import OFF, ON, Effects, EnterpriseRuntime
from ecowatt_alarm.model import EnterpriseModel, GroupModel
from ecowatt_alarm.rules import RuleSet, fmt_time, local_day

__all__ = ["Correlation"]


class Correlation:
    """Evaluates the alarm rules of one enterprise at one data time."""

    def __init__(
        self,
        rules: RuleSet,
        tz: str,
        lifecycle: AlarmLifecycle,
        explain: Explanations,
        group_ratio: Callable[[str], float | None],
    ) -> None:
        self.rules = rules
        self.tz = tz
        self.lifecycle = lifecycle
        self.explain = explain
        self.group_ratio = group_ratio
        self._day_cache: tuple[float, float, str] = (0.0, 0.0, "")

    def _day(self, t: float) -> str:
        """The local day of `t` (cached: one conversion per day, not per evaluation)."""
        start, end, day = self._day_cache
        if start <= t < end:
            return day
        day = local_day(t, self.tz)
        midnight = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo(self.tz))
        self._day_cache = (
            midnight.timestamp(),
            (midnight + timedelta(days=1)).timestamp(),
            day,
        )
        return day

    @staticmethod
    def _fac(rt: EnterpriseRuntime, fid: str) -> tuple[str | None, float]:
        fr = rt.facilities.get(fid)
        return (fr["state"], fr["since"]) if fr else (None, 0.0)

    # ----------------------------------------------------------------------- group rules

    def evaluate_group(
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
        day = self._day(now)
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
                    self._check_r3(rt, model, g, gr, at, now, fx)
                    gr["run_start"], gr["ctrl_off_at"] = None, None
            else:
                gr["ctrl_on"], gr["ctrl_since"] = on, at
                if gr["prod_on"]:
                    if on:
                        if not gr["ctrl_started"]:
                            self._check_r2(rt, model, g, gr, at, now, fx)
                        gr["ctrl_started"], gr["ctrl_off_at"] = True, None
                    elif gr["ctrl_started"]:
                        gr["ctrl_off_at"] = at

        facilities = g.production_ids + g.control_ids
        explain = self.explain

        # Conditions begin when production runs and the control facilities are in the state
        # the rule is about (ALL: the first of them in it; ANY: the last).
        def since_in(states: tuple[str, ...]) -> float:
            times = [t for s, t in ctrl if s in states]
            at = (min(times) if g.mode == "all" else max(times)) if times else now
            return max(gr["prod_since"] or now, at)

        # R1: production running, control stopped/standby.
        r1 = prod_on and ctrl_down and not ctrl_on
        start = since_in(OFF) if r1 else None
        # R5: both running, control at low load or its power ratio collapsed.
        r5_detail: dict[str, Any] = {}
        r5 = False
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
                    fx.stats.append(("group", g.id, ratio, now))
                if (
                    median
                    and ratio is not None
                    and ratio < float(self.rules["R5"].p("ratio_drop")) * median
                ):
                    r5, r5_detail = True, {"ratio": ratio, "ratio_median": median}
        # R6: control offline while production runs.
        r6 = prod_on and ctrl_offline
        start6 = since_in(("offline",)) if r6 else None
        self.lifecycle.track_episode(
            rt,
            model,
            g.id,
            facilities,
            {
                "R1": (r1, start, lambda a: explain.r1(rt, model, g, a)),
                "R5": (
                    r5,
                    r5_start if r5 else None,
                    lambda a: explain.r5(rt, model, g, a, r5_detail),
                ),
                "R6": (r6, start6, lambda a: explain.r6(rt, model, g, a)),
            },
            now,
            fx,
        )

    @staticmethod
    def _ratio(rt: EnterpriseRuntime, model: EnterpriseModel, g: GroupModel) -> float | None:
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

    # ------------------------------------------------------------------- R7 and OFFLINE

    def evaluate_total(
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
            key = f"R7|{pid}"
            if not holds and key not in rt.alarms and key not in rt.conditions:
                continue
            self.lifecycle.track(
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
                partial(self.explain.r7, rt, model, pm),
            )

    def evaluate_devices(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, now: float, fx: Effects
    ) -> None:
        for mn, pids in model.devices.items():
            states = [rt.points.get(p, {}) for p in pids]
            holds = bool(states) and all(s.get("state") == "offline" for s in states)
            key = f"OFFLINE|{mn}"
            if not holds and key not in rt.alarms and key not in rt.conditions:
                continue  # nothing holds, pends or is open: nothing to do
            start = max(s["since"] for s in states) if holds else None
            facilities = tuple(
                sorted({f for p in pids if (f := model.points[p].facility_id) is not None})
            )
            self.lifecycle.track(
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
                partial(self.explain.offline, rt, model, mn),
            )

    # ----------------------------------------------------------------------- event rules

    def _check_r2(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        g: GroupModel,
        gr: dict[str, Any],
        at: float,
        now: float,
        fx: Effects,
    ) -> None:
        start = gr["run_start"]
        if start is None:
            return
        delay_min = (at - start) / 60
        if delay_min <= g.start_lead_min:
            return
        text = (
            f"治理线组“{g.name}”：产污设施于 {fmt_time(start, self.tz)} 启动，治污设施直到 "
            f"{fmt_time(at, self.tz)} 才开启，延迟 {delay_min:.0f} 分钟，超过允许的 "
            f"{g.start_lead_min} 分钟。"
        )
        detail = {
            "production_start": start,
            "control_start": at,
            "delay_min": delay_min,
            "start_lead_min": g.start_lead_min,
        }
        self._edge(rt, model, g, "R2", start, at, delay_min, text, detail, now, fx)

    def _check_r3(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        g: GroupModel,
        gr: dict[str, Any],
        at: float,
        now: float,
        fx: Effects,
    ) -> None:
        off = gr["ctrl_off_at"]
        if off is None or not gr["ctrl_started"] or gr["ctrl_on"]:
            return
        early_min = (at - off) / 60
        if early_min <= g.stop_lag_min:
            return
        text = (
            f"治理线组“{g.name}”：治污设施于 {fmt_time(off, self.tz)} 关闭，产污设施运行至 "
            f"{fmt_time(at, self.tz)} 才停机，治污提前 {early_min:.0f} 分钟关闭，超过允许的 "
            f"{g.stop_lag_min} 分钟。"
        )
        detail = {
            "control_stop": off,
            "production_stop": at,
            "early_min": early_min,
            "stop_lag_min": g.stop_lag_min,
        }
        self._edge(rt, model, g, "R3", off, at, early_min, text, detail, now, fx)

    def _edge(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        g: GroupModel,
        code: str,
        first: float,
        last: float,
        minutes: float,
        text: str,
        detail: dict[str, Any],
        now: float,
        fx: Effects,
    ) -> None:
        """A late start or early stop: a facet of the group's open episode, else its own
        alarm, levelled by its minutes."""
        rule = self.rules[code]
        facilities = g.production_ids + g.control_ids
        if self.lifecycle.attach_event(
            rt, model, rule, g.id, facilities, first, last, text, now, fx
        ):
            return
        level = rule.level_for(minutes)
        self.lifecycle.event(
            rt,
            model,
            rule,
            "group",
            g.id,
            g.id,
            facilities,
            first,
            last,
            level,
            text,
            detail,
            now,
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
        self.lifecycle.event(
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
            now,
            fx,
        )
