"""The life of an alarm (supervision.md §2.3 merging): a condition is confirmed after
`confirm_min`, opens one alarm per (rule, subject), escalates with its duration, publishes an
update now and then, and recovers after `recover_min` clean; event rules (R2, R3, R4) open
already recovered. Suppression is decided when the alarm opens. Each operation carries the
evidence series of the involved points."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ecowatt_alarm.engine.runtime import AlarmOp, Effects, EnterpriseRuntime
from ecowatt_alarm.model import EnterpriseModel
from ecowatt_alarm.rules import LEVEL_NAMES, RuleConfig, RuleSet, fmt_time

__all__ = ["SERIES_MAX", "SERIES_SPACING_S", "AlarmLifecycle", "Explain", "Suppressor"]

SERIES_SPACING_S = 55.0
SERIES_MAX = 360

Suppressor = Callable[[str, str, tuple[str, ...], float, float], dict[str, Any] | None]
"""(enterprise_id, rule_code, facility_ids, start, end) → why it is suppressed, or None."""

Explain = Callable[[dict[str, Any]], str]
"""The rule-specific part of an alarm's explanation, from the alarm's fields."""


class AlarmLifecycle:
    """Opens, updates, escalates and recovers alarms; builds what each operation carries."""

    def __init__(
        self,
        rules: RuleSet,
        suppressor: Suppressor,
        tz: str,
        findings: Callable[[str, Iterable[str]], list[dict[str, Any]]],
    ) -> None:
        self.rules = rules
        self.suppressor = suppressor
        self.tz = tz
        self.findings = findings

    # -------------------------------------------------------------- condition lifecycle

    def track(
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
        explain: Explain,
    ) -> None:
        """One evaluation of a duration rule's condition for one subject at data time `now`."""
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
                if active.get("suppressed") and not self.suppressed(rt, code, facilities, now, now):
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
                    self.emit(rt, model, rule, active, op, facilities, explain, fx)
                return
            since = rt.conditions.setdefault(key, start if start is not None else now)
            confirm = float(rule.params.get("confirm_min", rule.params.get("open_after_min", 0)))
            if now - since < confirm * 60:
                return
            rt.conditions.pop(key, None)
            suppressed = self.suppressed(rt, code, facilities, since, now)
            level = rule.level_for((now - since) / 60)
            alarm = self.new_alarm(
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
            self.emit(rt, model, rule, rt.alarms[key], "open", facilities, explain, fx)
            return
        rt.conditions.pop(key, None)
        if active is None:
            return
        clean = active.setdefault("clean_since", now)
        if now - clean >= 60 * float(rule.params.get("recover_min", 0)):
            active["recovered_at"] = clean
            self.emit(rt, model, rule, active, "recover", facilities, explain, fx)
            del rt.alarms[key]

    def event(
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
        """An event rule's alarm: opened already recovered, [first, last]."""
        if not rule.enabled:
            return
        suppressed = self.suppressed(rt, rule.code, facilities, first, last)
        alarm = self.new_alarm(
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
        alarm["explanation"] = self.header(rule, level, suppressed) + text
        alarm["series"] = self.series(rt, model, facilities, first - 1800, last)
        fx.alarms.append(AlarmOp("open", alarm))

    def emit(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        rule: RuleConfig,
        active: dict[str, Any],
        op: str,
        facilities: tuple[str, ...],
        explain: Explain,
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
            "point_ids": self.points_of(model, facilities, active),
            "level": active["level"],
            "first_at": active["first_at"],
            "last_at": active["last_at"],
            "active": op != "recover",
            "recovered_at": active.get("recovered_at"),
            "suppressed_by": active.get("suppressed"),
            "detail": {},
        }
        alarm["explanation"] = self.header(rule, active["level"], active.get("suppressed")) + (
            explain(alarm)
        )
        if op == "recover":
            alarm["explanation"] += f" 已于 {fmt_time(active['recovered_at'], self.tz)} 自动恢复。"
        end = active["last_at"] if op != "recover" else active["recovered_at"]
        alarm["series"] = self.series(
            rt, model, facilities, active["first_at"] - 1800, end, alarm["point_ids"]
        )
        findings = self.findings(rt.enterprise_id, alarm["point_ids"])
        if findings:
            alarm["detail"]["quality_findings"] = findings
        fx.alarms.append(AlarmOp(op, alarm))

    def new_alarm(
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
            "point_ids": self.points_of(
                model, facilities, {"subject_id": subject_id, "subject_kind": subject_kind}
            ),
            "level": level,
            "first_at": first,
            "suppressed_by": suppressed,
            "detail": {},
        }

    @staticmethod
    def points_of(
        model: EnterpriseModel, facilities: Iterable[str], active: dict[str, Any]
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

    def suppressed(
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

    @staticmethod
    def header(rule: RuleConfig, level: int, suppressed: dict[str, Any] | None) -> str:
        head = f"【{rule.code} {rule.name} v{rule.version}｜{LEVEL_NAMES.get(level, level)}】"
        if suppressed:
            head += f"（已抑制：{suppressed.get('reason', suppressed.get('kind'))}）"
        return head

    # ------------------------------------------------------------------------- evidence

    @staticmethod
    def record_series(rt: EnterpriseRuntime, pid: str, t: float, p: float) -> None:
        series = rt.series.get(pid)
        if series is None:
            series = rt.series[pid] = deque(maxlen=SERIES_MAX)
        if series and t - series[-1][0] < SERIES_SPACING_S:
            return
        series.append((t, round(p, 3)))

    def series(
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
            else self.points_of(model, facilities, {"subject_kind": "group", "subject_id": ""})
        )
        return {
            pid: [(t, p) for t, p in rt.series.get(pid, ()) if start <= t <= end + 1]
            for pid in pids
        }
