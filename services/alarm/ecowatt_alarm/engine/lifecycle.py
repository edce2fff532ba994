"""The life of an alarm (supervision.md §2.3 merging): a condition is confirmed after
`confirm_min`, opens one alarm per (rule, subject), escalates with its duration (data time),
publishes an update now and then, and recovers after `recover_min` clean; event rules (R2,
R3, R4) open already recovered. One episode of a control group opens one alarm: R1, R5 and R6
are facets of the first of them that confirmed, and so are R2/R3 findings made while it is
open (`track_episode`, `attach_event`). Suppression is decided when the alarm opens. Each
operation carries its own explanation (nothing rewrites an earlier one) and the evidence
series of the involved points."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ecowatt_alarm.engine.runtime import AlarmOp, Effects, EnterpriseRuntime
from ecowatt_alarm.model import EnterpriseModel
from ecowatt_alarm.rules import LEVEL_NAMES, RuleConfig, RuleSet, fmt_time

__all__ = [
    "EPISODE_RULES",
    "SERIES_MAX",
    "SERIES_SPACING_S",
    "AlarmLifecycle",
    "Explain",
    "Suppressor",
]

SERIES_SPACING_S = 55.0
SERIES_MAX = 360

Suppressor = Callable[[str, str, tuple[str, ...], float, float], dict[str, Any] | None]
"""(enterprise_id, rule_code, facility_ids, start, end) → why it is suppressed, or None."""

Explain = Callable[[dict[str, Any]], str]
"""The rule-specific part of an alarm's explanation, from the alarm's fields."""

EPISODE_RULES = ("R1", "R5", "R6")
"""Duration rules of a control group that describe one episode of non-compliance: the first
to confirm opens the alarm, the others (and R2/R3 events) become its facets."""


def _confirm_s(rule: RuleConfig) -> float:
    return 60 * float(rule.params.get("confirm_min", rule.params.get("open_after_min", 0)))


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
        *,
        facets_changed: bool = False,
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
                elif facets_changed or now - active["emitted_at"] >= 60 * float(
                    rule.params.get("update_every_min", 15)
                ):
                    op = "update"
                active["level"] = max(level, active["level"])
                if op:
                    self.emit(rt, model, rule, active, op, facilities, explain, fx, now)
                return
            since = rt.conditions.setdefault(key, start if start is not None else now)
            if now - since < _confirm_s(rule):
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
            self.emit(rt, model, rule, rt.alarms[key], "open", facilities, explain, fx, now)
            return
        rt.conditions.pop(key, None)
        if active is None:
            return
        clean = active.setdefault("clean_since", now)
        if now - clean >= 60 * float(rule.params.get("recover_min", 0)):
            active["recovered_at"] = clean
            for facet in active.get("facets", {}).values():
                if facet["active"]:
                    facet["active"], facet["recovered_at"] = False, clean
            self.emit(rt, model, rule, active, "recover", facilities, explain, fx, now)
            del rt.alarms[key]

    def track_episode(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        group_id: str,
        facilities: tuple[str, ...],
        conditions: dict[str, tuple[bool, float | None, Explain]],
        now: float,
        fx: Effects,
    ) -> None:
        """R1, R5 and R6 of one control group: one episode, one alarm.

        The first of them to confirm opens the episode's alarm (the primary); while it lasts,
        another one that confirms is recorded as a facet of it (its own times and
        explanation, in `detail.facets`) instead of opening an alarm of its own, and the
        primary holds while its own condition or any facet's does (supervision.md §2.3
        merging: one alarm per violation, not one per rule that sees it). The episode goes on
        while any of the three conditions holds, confirmed or not yet: control stopped, then
        its meter cut off, is one episode."""
        primary_key = next(
            (k for c in EPISODE_RULES if (k := f"{c}|{group_id}") in rt.alarms), None
        )
        if primary_key is None:
            opened = False
            for code in EPISODE_RULES:
                holds, start, explain = conditions[code]
                if opened:
                    self._condition_timer(rt, code, group_id, holds, start, now)
                    continue
                self.track(
                    rt,
                    model,
                    code,
                    "group",
                    group_id,
                    group_id,
                    facilities,
                    holds,
                    start,
                    now,
                    fx,
                    explain,
                )
                opened = f"{code}|{group_id}" in rt.alarms
            return
        primary = rt.alarms[primary_key]
        facets: dict[str, dict[str, Any]] = primary.setdefault("facets", {})
        facet_holds, changed = False, False
        for code in EPISODE_RULES:
            if code == primary["rule"]:
                continue
            holds, start, explain = conditions[code]
            facet = facets.get(code)
            facet_holds = facet_holds or holds  # the episode goes on, confirmed or not yet
            if holds and facet is not None and facet["active"]:
                facet["last_at"] = now
            elif holds:
                since = self._condition_timer(rt, code, group_id, True, start, now)
                rule = self.rules[code]
                if since is not None and now - since >= _confirm_s(rule) and rule.enabled:
                    rt.conditions.pop(f"{code}|{group_id}", None)
                    text = explain({"first_at": since, "last_at": now})
                    facets[code] = self._facet(rule, since, now, None, text, facet)
                    changed = True
            else:
                rt.conditions.pop(f"{code}|{group_id}", None)
                if facet is not None and facet["active"]:
                    facet["active"], facet["recovered_at"] = False, now
                    changed = True
        holds, start, explain = conditions[primary["rule"]]
        self.track(
            rt,
            model,
            primary["rule"],
            "group",
            group_id,
            group_id,
            facilities,
            holds or facet_holds,
            start,
            now,
            fx,
            explain,
            facets_changed=changed,
        )

    def attach_event(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        rule: RuleConfig,
        group_id: str,
        facilities: tuple[str, ...],
        first: float,
        last: float,
        text: str,
        now: float,
        fx: Effects,
    ) -> bool:
        """An event rule's finding (R2 late start, R3 early stop) during an episode whose
        alarm is open (or still recovering) becomes a facet of that alarm; True if so."""
        primary = next(
            (a for c in EPISODE_RULES if (a := rt.alarms.get(f"{c}|{group_id}")) is not None),
            None,
        )
        if primary is None or primary["first_at"] > last:
            return False
        facets = primary.setdefault("facets", {})
        facets[rule.code] = self._facet(rule, first, last, last, text, facets.get(rule.code))
        primary_rule = self.rules[primary["rule"]]
        facet = f"同一异常事件另见【{rule.code} {rule.name} v{rule.version}】{text}"
        self.emit(rt, model, primary_rule, primary, "update", facilities, lambda _a: facet, fx, now)
        return True

    def _facet(
        self,
        rule: RuleConfig,
        first: float,
        last: float,
        recovered: float | None,
        text: str,
        previous: dict[str, Any] | None,
    ) -> dict[str, Any]:
        return {
            "rule_code": rule.code,
            "rule_name": rule.name,
            "rule_version": rule.version,
            "first_at": first,
            "last_at": last,
            "active": recovered is None,
            "recovered_at": recovered,
            "explanation": f"【{rule.code} {rule.name} v{rule.version}】{text}",
            "occurrences": (previous or {}).get("occurrences", 0) + 1,
        }

    @staticmethod
    def _condition_timer(
        rt: EnterpriseRuntime,
        code: str,
        subject_id: str,
        holds: bool,
        start: float | None,
        now: float,
    ) -> float | None:
        key = f"{code}|{subject_id}"
        if not holds:
            rt.conditions.pop(key, None)
            return None
        return rt.conditions.setdefault(key, start if start is not None else now)

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
        now: float,
        fx: Effects,
    ) -> None:
        """An event rule's alarm: opened already recovered, [first, last], decided at `now`."""
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
        alarm.update(last_at=last, active=False, recovered_at=last, detail=detail, decided_at=now)
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
        now: float,
    ) -> None:
        """An operation on an open alarm, with the explanation of this moment: the opening,
        an escalation and an update describe the condition as it holds now; a recovery says
        when and how it cleared. Nothing rewrites an earlier explanation."""
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
            "decided_at": now,
            "detail": {},
        }
        if active.get("facets"):
            alarm["detail"]["facets"] = [dict(f) for f in active["facets"].values()]
        head = self.header(rule, active["level"], active.get("suppressed"))
        if op == "recover":
            alarm["explanation"] = head + self._recovery(model, rule, active)
        else:
            alarm["explanation"] = head + explain(alarm)
        end = active["last_at"] if op != "recover" else active["recovered_at"]
        alarm["series"] = self.series(
            rt, model, facilities, active["first_at"] - 1800, end, alarm["point_ids"]
        )
        findings = self.findings(rt.enterprise_id, alarm["point_ids"])
        if findings:
            alarm["detail"]["quality_findings"] = findings
        fx.alarms.append(AlarmOp(op, alarm))

    def _recovery(self, model: EnterpriseModel, rule: RuleConfig, active: dict[str, Any]) -> str:
        last = active["last_at"]
        minutes = (last - active["first_at"]) / 60
        recover = float(rule.params.get("recover_min", 0))
        calm = f"此后 {recover:g} 分钟未再出现，" if recover else ""
        return (
            f"{self._subject_name(model, active)}：异常自 {fmt_time(active['first_at'], self.tz)} "
            f"起，最后一次出现于 {fmt_time(last, self.tz)}（约 {minutes:.0f} 分钟）；{calm}"
            f"报警于 {fmt_time(active['recovered_at'], self.tz)} 自动恢复。"
        )

    @staticmethod
    def _subject_name(model: EnterpriseModel, active: dict[str, Any]) -> str:
        kind, subject = active["subject_kind"], active["subject_id"]
        if kind == "group":
            group = next((g for g in model.groups if g.id == active.get("group_id")), None)
            return f"治理线组“{group.name if group else subject}”"
        if kind == "point":
            point = model.points.get(subject)
            return f"点位“{point.name if point else subject}”"
        return f"设备 {subject}"

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
