"""Suppression sources besides power loss: approved planned-outage filings (报备) and
control-plan stop orders (`control.tasks`). Both are held in memory per enterprise and
reloaded from the database at start-up; the engine asks `Suppressions(...)` at fire time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ecowatt_kernel.registry_view import RegistryView

__all__ = ["CONTROL_PLAN_RULES", "FilingWindow", "StopOrder", "Suppressions"]

CONTROL_PLAN_RULES = frozenset({"R1", "R2", "R3", "R4", "R5"})
"""A production-stop order makes these rules moot for the ordered facilities (§2.3)."""


@dataclass(frozen=True)
class FilingWindow:
    id: str
    facility_ids: frozenset[str]  # empty: the whole enterprise
    start: float
    end: float
    reason: str


@dataclass(frozen=True)
class StopOrder:
    task_id: str
    alert_id: str
    facility_ids: frozenset[str]  # empty with whole=True: every production facility
    whole: bool
    start: float
    end: float | None


class Suppressions:
    """Approved filings and stop orders by enterprise."""

    def __init__(self, view: RegistryView | None = None) -> None:
        self.view = view
        self.filings: dict[str, dict[str, FilingWindow]] = {}
        self.orders: dict[str, dict[str, StopOrder]] = {}

    # ---------------------------------------------------------------------------- filings

    def set_filing(
        self,
        enterprise_id: str,
        filing_id: str,
        *,
        approved: bool,
        facility_ids: list[str],
        start: datetime,
        end: datetime,
        reason: str,
    ) -> None:
        bucket = self.filings.setdefault(enterprise_id, {})
        if not approved:
            bucket.pop(filing_id, None)
            return
        bucket[filing_id] = FilingWindow(
            filing_id, frozenset(facility_ids), start.timestamp(), end.timestamp(), reason
        )

    # ------------------------------------------------------------------------ stop orders

    def set_task(
        self,
        enterprise_id: str,
        task_id: str,
        alert_id: str,
        measures: list[dict[str, Any]],
        start: datetime,
        end: datetime | None,
    ) -> None:
        bucket = self.orders.setdefault(enterprise_id, {})
        facilities: set[str] = set()
        whole = False
        for measure in measures:
            if str(measure.get("action", "")).upper() != "STOP":
                continue
            kind = measure.get("target_kind", "enterprise")
            targets = [str(t) for t in measure.get("target_ids") or []]
            if kind == "enterprise" or not targets:
                whole = True
            elif kind == "facility":
                facilities.update(targets)
            elif kind == "point" and self.view is not None:
                for pid in targets:
                    point = self.view.point(pid)
                    if point is not None and point.facility_id:
                        facilities.add(point.facility_id)
            elif kind == "production_line" and self.view is not None:
                for fac in self.view.all("facility"):
                    if getattr(fac, "production_line_id", None) in targets:
                        facilities.add(fac.id)
        if not whole and not facilities:
            bucket.pop(task_id, None)
            return
        bucket[task_id] = StopOrder(
            task_id,
            alert_id,
            frozenset(facilities),
            whole,
            start.timestamp(),
            end.timestamp() if end else None,
        )

    # ------------------------------------------------------------------------------ query

    def __call__(
        self, enterprise_id: str, code: str, facilities: tuple[str, ...], start: float, end: float
    ) -> dict[str, Any] | None:
        for f in self.filings.get(enterprise_id, {}).values():
            if (f.start <= end and start <= f.end) and (
                not f.facility_ids or f.facility_ids.intersection(facilities)
            ):
                return {
                    "kind": "filing",
                    "id": f.id,
                    "reason": f"计划停运报备：{f.reason}",
                }
        if code in CONTROL_PLAN_RULES:
            for o in self.orders.get(enterprise_id, {}).values():
                if (o.start <= end and (o.end is None or start <= o.end)) and (
                    o.whole or o.facility_ids.intersection(facilities)
                ):
                    return {
                        "kind": "control_plan",
                        "id": o.task_id,
                        "alert_id": o.alert_id,
                        "reason": "重污染天气管控停产指令",
                    }
        return None
