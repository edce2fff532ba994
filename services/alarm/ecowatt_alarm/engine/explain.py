"""The Chinese explanations of alarms: thresholds, values and times, so that every alarm says
why it was raised (supervision.md §5: users ask how alarms are computed)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ecowatt_alarm.engine.runtime import EnterpriseRuntime
from ecowatt_alarm.model import EnterpriseModel, GroupModel, PointModel
from ecowatt_alarm.rules import RuleSet, fmt_kw, fmt_time

__all__ = ["STATE_ZH", "Explanations"]

STATE_ZH = {
    "offline": "离线",
    "power_loss": "停电",
    "stopped": "停运",
    "standby": "待机",
    "running": "运行",
    "low_load": "低负荷",
    "": "未知",
}


class Explanations:
    """The rule-specific sentences of each alarm kind."""

    def __init__(self, rules: RuleSet, tz: str) -> None:
        self.rules = rules
        self.tz = tz

    def describe_points(
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
                if pr.get("state") == "offline":
                    last = fmt_kw(pr.get("last_p"))
                    value = f"离线（最后数据 {last}，{fmt_time(pr['last_t'], self.tz)}）"
                else:
                    # The value that decided the point's state, not a later sample that may
                    # not be confirmed yet: the sentence must not contradict itself.
                    value = fmt_kw(pr.get("state_p", pr.get("last_p")))
                points.append(f"{pm.name} {value}，{pm.describe_threshold()}")
            parts.append(f"{fm.name}[{STATE_ZH.get(state or '', state)}]（{'；'.join(points)}）")
        return "、".join(parts)

    def r1(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, g: GroupModel, a: dict[str, Any]
    ) -> str:
        confirm = self.rules["R1"].p("confirm_min")
        return (
            f"治理线组“{g.name}”（{'全部' if g.mode == 'all' else '任一'}治污设施须运行）："
            f"产污设施 {self.describe_points(rt, model, g.production_ids)} 运行，治污设施 "
            f"{self.describe_points(rt, model, g.control_ids)} 未运行；首次异常时间 "
            f"{fmt_time(a['first_at'], self.tz)}，已持续 {(a['last_at'] - a['first_at']) / 60:.0f} "
            f"分钟（确认时长 {confirm} 分钟）。"
        )

    def r5(
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
                    pr = rt.points.get(pid, {})
                    if pr.get("state") != "low_load":
                        continue
                    lows.append(
                        f"{pm.name} {fmt_kw(pr.get('state_p', pr.get('last_p')))} < 低负荷阈值 "
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

    def r6(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, g: GroupModel, a: dict[str, Any]
    ) -> str:
        return (
            f"治理线组“{g.name}”：产污设施 {self.describe_points(rt, model, g.production_ids)} "
            f"在线运行，而治污设施 {self.describe_points(rt, model, g.control_ids)} 点位离线；自 "
            f"{fmt_time(a['first_at'], self.tz)} 起持续 {(a['last_at'] - a['first_at']) / 60:.0f} "
            f"分钟，疑似人为断开监测。"
        )

    def r7(
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

    def offline(
        self, rt: EnterpriseRuntime, model: EnterpriseModel, mn: str, a: dict[str, Any]
    ) -> str:
        names = "、".join(model.points[p].name for p in model.devices.get(mn, []))
        hours = (a["last_at"] - a["first_at"]) / 3600
        return (
            f"设备 {mn}（点位：{names}）自 {fmt_time(a['first_at'], self.tz)} 起无有效数据，已离线 "
            f"{hours:.1f} 小时（2 小时报警，24 小时、72 小时升级）。"
        )
