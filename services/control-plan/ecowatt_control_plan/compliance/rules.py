"""The compliance rules: one hour of one measure's target, judged from minute values.

Pure functions (no I/O); `docs/control-plans.md` explains them with a worked example. Every
tolerance is a named constant here, and the same numbers are written in the document.

A point's hour is a list of 60 minute values (kW, None where nothing valid arrived). Within
the minutes a measure is in force (its *window*: after its effective time, inside the task,
inside the OFFPEAK windows), a point's completeness is the share of its expected sample
slots that hold a value; its energy is its mean power × the window's length; it *runs* in a
minute at or above its start/stop threshold. Verdicts: compliant, non_compliant, unknown
(无法判定) — unknown whenever a point of the target is offline or its completeness is below
`MIN_COMPLETENESS`, and never counted as compliant.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

MIN_COMPLETENESS = 0.8
"""Below 80 % of the expected samples a point cannot be judged (supervision.md §3.5)."""
MIN_WINDOW_MIN = 30
"""An hour in which a measure is in force for less than 30 minutes is not judged."""
STOP_MAX_RUNNING_SHARE = 0.05
"""STOP: every target point below its start/stop threshold in ≥ 95 % of its samples …"""
STOP_MAX_ENERGY_SHARE = 0.10
"""… and the target's energy ≤ 10 % of its production-hour baseline (sub-metered)."""
STOP_TOTAL_MAX_ENERGY_SHARE = 0.25
"""STOP judged on total lines only: energy ≤ 25 % of the production-hour baseline."""
LIMIT_TOLERANCE_PP = 5.0
"""LIMIT by reduction: the reduction against the baseline may fall 5 points short."""
LIMIT_LOAD_MARGIN = 1.05
"""LIMIT by load: mean power ≤ allowed % × rated power × 1.05."""
QUIET_HOUR_SHARE = 0.2
"""LIMIT: an hour whose baseline is below 20 % of the production-hour baseline is a quiet
hour (the target does not normally produce then): it complies unless it uses more than its
baseline plus 10 % of the production-hour baseline."""
KEEP_MIN_PRODUCTION_MIN = 10
"""KEEP_CONTROL_RUNNING: judged on groups whose production ran ≥ 10 minutes …"""
KEEP_MIN_COVERAGE = 0.8
"""… whose control facilities must run in ≥ 80 % of those minutes."""
PRODUCING_SHARE = 0.05
"""An enterprise produces in an hour when a production point runs in > 5 % of it."""

COMPLIANT: Final = "compliant"
NON_COMPLIANT: Final = "non_compliant"
UNKNOWN: Final = "unknown"


@dataclass(frozen=True)
class PointHour:
    """One point's data for one hour, with what the archive and the baseline say about it."""

    point_id: str
    point_type: str
    powers: Sequence[float | None]
    step: int = 1
    threshold_kw: float = 1.0
    idle_kw: float = 0.2
    rated_kw: float | None = None
    is_key: bool = True
    facility_id: str | None = None
    baseline_kwh: float | None = None
    """Median energy of this hour of the day on normal days (or the documented fallback)."""
    peak_kwh: float | None = None
    """The highest hour of the baseline profile: the point's normal production level."""
    baseline_source: str = "none"
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    """`stats` per window and the running states (several measures judge the same data)."""


@dataclass
class Stats:
    completeness: float
    mean_kw: float | None
    present: int
    running: int

    @property
    def running_share(self) -> float:
        return self.running / self.present if self.present else 0.0


@dataclass
class Judgement:
    verdict: str
    reason: str
    actual_kwh: float | None = None
    baseline_kwh: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


def stats(point: PointHour, minutes: Sequence[int]) -> Stats:
    """Completeness, mean power and running minutes of a point within `minutes`."""
    key = tuple(minutes)
    found = point.memo.get(key)
    if found is None:
        found = point.memo[key] = _stats(point, minutes)
    return found


def _stats(point: PointHour, minutes: Sequence[int]) -> Stats:
    slots = {m // point.step for m in minutes}
    values = [(m, point.powers[m]) for m in minutes if point.powers[m] is not None]
    filled = {m // point.step for m, _ in values}
    powers = [float(p) for _, p in values if p is not None]
    return Stats(
        completeness=len(filled) / len(slots) if slots else 0.0,
        mean_kw=statistics.fmean(powers) if powers else None,
        present=len(powers),
        running=sum(1 for p in powers if p >= point.threshold_kw),
    )


def _unknown(points: Sequence[PointHour], all_stats: dict[str, Stats]) -> Judgement | None:
    if not points:
        return Judgement(UNKNOWN, "无可判定的监测点位", evidence={"cause": "no_points"})
    weak = {
        p.point_id: s.completeness
        for p in points
        if (s := all_stats[p.point_id]).completeness < MIN_COMPLETENESS
    }
    if not weak:
        return None
    offline = all(all_stats[p.point_id].present == 0 for p in points)
    cause = "offline" if offline else "incomplete"
    reason = (
        "点位离线，无法判定"
        if offline
        else "数据完整率不足 80%，无法判定（"
        + "、".join(f"{k} {v:.0%}" for k, v in sorted(weak.items()))
        + "）"
    )
    return Judgement(UNKNOWN, reason, evidence={"cause": cause, "completeness": weak})


def _energy(points: Sequence[PointHour], all_stats: dict[str, Stats], hours: float) -> float:
    return sum((all_stats[p.point_id].mean_kw or 0.0) * hours for p in points)


def _baseline(points: Sequence[PointHour], share: float) -> tuple[float | None, float | None]:
    if any(p.baseline_kwh is None or p.peak_kwh is None for p in points):
        return None, None
    return (
        sum(p.baseline_kwh or 0.0 for p in points) * share,
        sum(p.peak_kwh or 0.0 for p in points) * share,
    )


def _common(points: Sequence[PointHour], minutes: Sequence[int]) -> dict[str, Any]:
    return {
        "minutes": len(minutes),
        "points": [p.point_id for p in points],
        "baseline_source": sorted({p.baseline_source for p in points}),
    }


def judge_stop(points: Sequence[PointHour], minutes: Sequence[int]) -> Judgement:
    """STOP (and OFFPEAK inside its windows): not running, and energy near nothing."""
    all_stats = {p.point_id: stats(p, minutes) for p in points}
    unknown = _unknown(points, all_stats)
    if unknown is not None:
        return unknown
    share = len(minutes) / 60
    actual = _energy(points, all_stats, share)
    baseline, peak = _baseline(points, share)
    evidence = _common(points, minutes) | {
        "running_share": {
            p.point_id: round(all_stats[p.point_id].running_share, 3) for p in points
        },
    }
    if all(p.point_type == "total" for p in points):
        if peak is None:
            return Judgement(
                UNKNOWN,
                "仅有总电且无基线，无法判定停产",
                actual,
                None,
                evidence | {"cause": "no_baseline"},
            )
        cap = STOP_TOTAL_MAX_ENERGY_SHARE * peak
        evidence |= {"allowed_kwh": round(cap, 3), "rule": "total ≤ 25% of peak baseline"}
        ok = actual <= cap
        sign = "≤" if ok else ">"
        reason = f"总电电量 {actual:.1f} kWh {sign} 生产时段基线的 25%（{cap:.1f} kWh）"
        return Judgement(COMPLIANT if ok else NON_COMPLIANT, reason, actual, baseline, evidence)
    running = [
        p.point_id for p in points if all_stats[p.point_id].running_share > STOP_MAX_RUNNING_SHARE
    ]
    allowed: float | None = None
    if all(p.peak_kwh is not None for p in points):
        allowed = sum(
            max(STOP_MAX_ENERGY_SHARE * (p.peak_kwh or 0.0), p.idle_kw) * share for p in points
        )
        evidence["allowed_kwh"] = round(allowed, 3)
    else:
        evidence["note"] = "无基线，仅按运行时长判定"
    if running:
        minutes_run = sum(all_stats[p].running for p in running)
        return Judgement(
            NON_COMPLIANT,
            f"停产对象仍在运行（{len(running)} 个点位共 {minutes_run} 个样本不低于启停阈值）",
            actual,
            baseline,
            evidence,
        )
    if allowed is not None and actual > allowed:
        return Judgement(
            NON_COMPLIANT,
            f"停产对象用电 {actual:.1f} kWh，超过允许的 {allowed:.1f} kWh"
            "（生产时段基线的 10% 或待机功率）",
            actual,
            baseline,
            evidence,
        )
    return Judgement(
        COMPLIANT, f"已停产：用电 {actual:.1f} kWh，无运行样本", actual, baseline, evidence
    )


def judge_limit(
    points: Sequence[PointHour],
    minutes: Sequence[int],
    *,
    reduction_pct: float | None,
    allowed_load_pct: float | None,
) -> Judgement:
    """LIMIT: by reduction against the baseline, or by mean load against rated power."""
    all_stats = {p.point_id: stats(p, minutes) for p in points}
    unknown = _unknown(points, all_stats)
    if unknown is not None:
        return unknown
    share = len(minutes) / 60
    actual = _energy(points, all_stats, share)
    baseline, peak = _baseline(points, share)
    evidence = _common(points, minutes)
    if allowed_load_pct is not None:
        if any(p.rated_kw is None for p in points):
            return Judgement(
                UNKNOWN,
                "档案缺少额定功率，无法按负荷率判定",
                actual,
                baseline,
                evidence | {"cause": "no_rated"},
            )
        rated = sum(p.rated_kw or 0.0 for p in points)
        mean_kw = actual / share if share else 0.0
        limit = allowed_load_pct / 100 * rated * LIMIT_LOAD_MARGIN
        evidence |= {
            "mean_kw": round(mean_kw, 2),
            "rated_kw": round(rated, 2),
            "limit_kw": round(limit, 2),
            "allowed_load_pct": allowed_load_pct,
        }
        ok = mean_kw <= limit
        reason = (
            f"平均负荷 {mean_kw:.1f} kW（额定 {rated:.0f} kW 的 {mean_kw / rated:.0%}）"
            f"{'≤' if ok else '>'} 允许的 {allowed_load_pct:g}%（含 5% 裕度 {limit:.1f} kW）"
        )
        return Judgement(COMPLIANT if ok else NON_COMPLIANT, reason, actual, baseline, evidence)
    assert reduction_pct is not None
    if baseline is None or peak is None:
        return Judgement(
            UNKNOWN, "无基线，无法按减排比例判定", actual, None, evidence | {"cause": "no_baseline"}
        )
    required = reduction_pct - LIMIT_TOLERANCE_PP
    evidence |= {"required_pct": reduction_pct, "tolerance_pp": LIMIT_TOLERANCE_PP}
    if baseline < QUIET_HOUR_SHARE * peak:
        allowed = baseline + STOP_MAX_ENERGY_SHARE * peak
        ok = actual <= allowed
        evidence |= {"quiet_hour": True, "allowed_kwh": round(allowed, 3)}
        reason = (
            f"非生产时段（基线 {baseline:.1f} kWh 低于生产时段的 20%）：用电 {actual:.1f} kWh "
            f"{'≤' if ok else '>'} {allowed:.1f} kWh"
        )
        return Judgement(COMPLIANT if ok else NON_COMPLIANT, reason, actual, baseline, evidence)
    reduction = (1 - actual / baseline) * 100
    evidence["reduction_pct"] = round(reduction, 1)
    ok = reduction >= required
    reason = (
        f"较基线 {baseline:.1f} kWh 减少 {reduction:.1f}%（用电 {actual:.1f} kWh），"
        f"{'达到' if ok else '未达到'}要求的 {reduction_pct:g}%"
        f"（容差 {LIMIT_TOLERANCE_PP:g} 个百分点）"
    )
    return Judgement(COMPLIANT if ok else NON_COMPLIANT, reason, actual, baseline, evidence)


def running_by_minute(point: PointHour) -> list[bool | None]:
    """Per minute: whether the point runs (None: no value). A sample stands for its minute
    and the next `step − 1` ones, so that 5- or 15-minute data cover their minutes."""
    found: list[bool | None] | None = point.memo.get("running")
    if found is None:
        found = point.memo["running"] = _running_by_minute(point)
    return found


def _running_by_minute(point: PointHour) -> list[bool | None]:
    out: list[bool | None] = [None] * 60
    last: float | None = None
    age = point.step
    for m, value in enumerate(point.powers):
        if value is not None:
            last, age = value, 0
        else:
            age += 1
        if last is not None and age < point.step:
            out[m] = last >= point.threshold_kw
    return out


def facility_by_minute(points: Sequence[PointHour], *, control: bool) -> list[bool | None]:
    """Per minute: a production facility runs if any point runs; a control facility if all
    its key points run. None when a needed value is missing."""
    needed = [p for p in points if p.is_key] if control else list(points)
    states = [running_by_minute(p) for p in needed or points]
    out: list[bool | None] = []
    for minute in zip(*states, strict=True):
        if control:
            out.append(None if None in minute else all(minute))
        elif True in minute:
            out.append(True)
        else:
            out.append(None if None in minute else False)
    return out


def judge_keep(
    production: Mapping[str, Sequence[PointHour]],
    control: Mapping[str, Sequence[PointHour]],
    minutes: Sequence[int],
    *,
    mode: str,
) -> Judgement:
    """KEEP_CONTROL_RUNNING for one control group: control runs while production runs."""
    points = [p for ps in (*production.values(), *control.values()) for p in ps]
    all_stats = {p.point_id: stats(p, minutes) for p in points}
    evidence = _common(points, minutes)
    prod_points = [p for ps in production.values() for p in ps]
    if not prod_points or not control:
        return Judgement(UNKNOWN, "治理线组缺少产污或治污点位", evidence={"cause": "no_points"})
    unknown = _unknown(prod_points, all_stats)
    prod_states = [facility_by_minute(ps, control=False) for ps in production.values()]
    ctrl_states = [facility_by_minute(ps, control=True) for ps in control.values()]
    producing: list[int] = []
    covered = 0
    judged = 0
    for m in minutes:
        if not any(states[m] for states in prod_states):
            continue
        producing.append(m)
        states = [s[m] for s in ctrl_states]
        if None in states:
            continue
        judged += 1
        on = all(states) if mode == "all" else any(states)
        covered += 1 if on else 0
    evidence |= {"production_minutes": len(producing), "control_minutes": covered}
    if unknown is not None and len(producing) < KEEP_MIN_PRODUCTION_MIN:
        return unknown
    if len(producing) < KEEP_MIN_PRODUCTION_MIN:
        return Judgement(
            COMPLIANT, f"产污设施运行 {len(producing)} 分钟，无需同步", evidence=evidence
        )
    control_unknown = _unknown([p for ps in control.values() for p in ps], all_stats)
    if control_unknown is not None or judged < MIN_COMPLETENESS * len(producing):
        result = control_unknown or Judgement(UNKNOWN, "治污点位数据不完整，无法判定")
        result.evidence |= evidence
        return result
    coverage = covered / judged if judged else 0.0
    evidence["coverage"] = round(coverage, 3)
    ok = coverage >= KEEP_MIN_COVERAGE
    reason = (
        f"产污运行 {len(producing)} 分钟，治污设施同步运行 {coverage:.0%}"
        f"（要求不低于 {KEEP_MIN_COVERAGE:.0%}）"
    )
    return Judgement(COMPLIANT if ok else NON_COMPLIANT, reason, evidence=evidence)


STATUS_FOR = {
    "KEEP_CONTROL_RUNNING": "未开启治污设备",
    "STOP": "未响应停产",
    "OFFPEAK": "未响应停产",
    "LIMIT": "未响应减产",
}
PRIORITY = ("未开启治污设备", "未响应停产", "未响应减产")


def enterprise_status(verdicts: Sequence[tuple[str, str]], *, producing: bool) -> str:
    """The hour's status from its (action, verdict) pairs: a violation first (control off,
    then not stopped, then not reduced), then 离线/无法判定 if anything could not be judged,
    then 停工 or 合规生产 by whether production ran."""
    violations = {STATUS_FOR[a] for a, v in verdicts if v == NON_COMPLIANT and a in STATUS_FOR}
    for status in PRIORITY:
        if status in violations:
            return status
    if any(v == UNKNOWN for _, v in verdicts):
        return "离线/无法判定"
    return "合规生产" if producing else "停工"


def curve(points: Sequence[PointHour], *, bucket_min: int = 5) -> list[float | None]:
    """The target's power in 5-minute means (kW), for evidence charts."""
    out: list[float | None] = []
    for start in range(0, 60, bucket_min):
        total, seen = 0.0, False
        for p in points:
            values = [v for v in p.powers[start : start + bucket_min] if v is not None]
            if values:
                total += statistics.fmean(values)
                seen = True
        out.append(round(total, 2) if seen else None)
    return out
