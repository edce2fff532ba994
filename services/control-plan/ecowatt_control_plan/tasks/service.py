"""Decomposition: approved orders × the reduction list → per-enterprise tasks on `control.tasks`.

For every enterprise of the list, the orders covering its district give a timeline; at any
moment the highest level governs (DESIGN/supervision §3.1: a regional and a city order both
active → the higher level; equal levels → the order that took effect first). Each stretch of
one governing (order, level) is a task, with that level's measures of the list version the
order pinned. Every measure is checked from the stretch's start + its ramp time
(`effective_at`); a measure that continues unchanged from the stretch before keeps its
effective time. KEEP_CONTROL_RUNNING is implied for every task, from its start.

`decompose` recomputes the desired tasks and writes only the differences: new stretches are
`issued`, a stretch cut short (lift, a level change, a district removed) is `ended` with its
new end, any other difference is `changed`. Re-running it changes nothing.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ecowatt_kernel.contracts import ControlTaskChanged, encode
from ecowatt_kernel.outbox import enqueue
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan.alerts.models import alert_order
from ecowatt_control_plan.database import OUTBOX
from ecowatt_control_plan.measures import service as measures
from ecowatt_control_plan.measures.models import LEVEL_RANK
from ecowatt_control_plan.tasks.models import task, task_history

KEEP_MEASURE_ID = "KEEP_CONTROL_RUNNING"
HORIZON = timedelta(days=7)
"""Orders that ended longer ago than this are history: their tasks are never touched again."""
_FAR = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Span:
    """One segment of an approved order: from `start` to `end`, `level` over `districts`."""

    alert_id: str
    start: datetime
    end: datetime | None
    level: str
    districts: tuple[str, ...]
    order_effective_at: datetime
    list_version: int
    ramp_min: int | None = None
    """The order's own wind-down time, instead of each measure's."""

    @property
    def rank(self) -> tuple[int, float, str]:
        # Higher level first; then the order in force earlier; then the id (stable).
        return (-LEVEL_RANK[self.level], self.order_effective_at.timestamp(), self.alert_id)


@dataclass
class Piece:
    """A desired task: one enterprise governed by one span's order and level."""

    task_id: str
    alert_id: str
    enterprise_id: str
    start: datetime
    end: datetime | None
    level: str
    list_version: int
    measures: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Result:
    issued: int = 0
    changed: int = 0
    ended: int = 0
    unchanged: int = 0
    events: list[ControlTaskChanged] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "issued": self.issued,
            "changed": self.changed,
            "ended": self.ended,
            "unchanged": self.unchanged,
        }


def covers(districts: Sequence[str], district_code: str | None) -> bool:
    """Whether an order's districts cover an enterprise's (none listed: the whole city; a
    code ending in 00 covers its county-level children)."""
    if not districts:
        return True
    if not district_code:
        return False
    for code in districts:
        if code.endswith("0000") and district_code.startswith(code[:2]):
            return True
        if code.endswith("00") and district_code.startswith(code[:4]):
            return True
        if code == district_code:
            return True
    return False


def order_end(row: Any) -> datetime | None:
    """When an order stops applying: its lift, else its expected end (None: open)."""
    ends = [t for t in (row["lifted_at"], row["expected_end"]) if t is not None]
    return min(ends) if ends else None


def spans_of(row: Any) -> list[Span]:
    """The segments of an approved order as spans (empty when lifted before taking effect)."""
    end = order_end(row)
    segments = sorted(row["segments"], key=lambda s: s["from"])
    out: list[Span] = []
    for index, segment in enumerate(segments):
        start = datetime.fromisoformat(segment["from"])
        stop = (
            datetime.fromisoformat(segments[index + 1]["from"])
            if index + 1 < len(segments)
            else end
        )
        if end is not None:
            stop = min(stop, end) if stop is not None else end
        if stop is not None and stop <= start:
            continue
        out.append(
            Span(
                alert_id=row["id"],
                start=start,
                end=stop,
                level=segment["level"],
                districts=tuple(segment["districts"]),
                order_effective_at=row["effective_at"],
                list_version=int(row["list_version"] or 0),
                ramp_min=row.get("ramp_min"),
            )
        )
    return out


def governing(spans: Iterable[Span]) -> list[tuple[datetime, datetime | None, Span]]:
    """The governing span over time: (start, end, span) stretches, merged when unchanged."""
    spans = list(spans)
    if not spans:
        return []
    bounds = sorted({s.start for s in spans} | {s.end or _FAR for s in spans})
    out: list[tuple[datetime, datetime | None, Span]] = []
    for lo, hi in itertools.pairwise(bounds):
        active = [s for s in spans if s.start <= lo and (s.end or _FAR) >= hi]
        if not active:
            continue
        best = min(active, key=lambda s: s.rank)
        end = None if hi == _FAR else hi
        if (
            out
            and out[-1][1] == lo
            and out[-1][2].alert_id == best.alert_id
            and out[-1][2].level == best.level
        ):
            out[-1] = (out[-1][0], end, out[-1][2])
        else:
            out.append((lo, end, best))
    return out


def task_id_of(alert_id: str, enterprise_id: str, start: datetime) -> str:
    return f"{alert_id}:{enterprise_id}:{start.astimezone(UTC):%Y%m%dT%H%MZ}"


def materialise(
    *,
    enterprise_id: str,
    rows: Sequence[dict[str, Any]],
    start: datetime,
    level: str,
    previous: Piece | None,
    ramp_min: int | None = None,
) -> list[dict[str, Any]]:
    """The measures of one task, with their effective times, then the implied one."""
    carried: list[dict[str, Any]] = []
    if previous is not None and previous.end == start:
        carried = [m for m in previous.measures if m["action"] != "KEEP_CONTROL_RUNNING"]
    out = []
    for row in rows:
        values = measures.normalised(row)
        if ramp_min is not None:
            values["ramp_min"] = ramp_min
        item = {
            "measure_id": row["measure_id"],
            "level": level,
            "action": values["action"],
            "target_kind": values["target_kind"],
            "target_ids": values["target_ids"],
            "reduction_pct": values["reduction_pct"],
            "allowed_load_pct": values["allowed_load_pct"],
            "windows": values["windows"],
            "ramp_min": values["ramp_min"],
            "exempt_reason": values["exempt_reason"],
            "legal_text": values["legal_text"],
            "effective_at": (start + timedelta(minutes=values["ramp_min"])).isoformat(),
        }
        # The same requirement as just before (e.g. a level raised with this measure kept):
        # it is checked on from when it first took effect, without a new ramp.
        before = next((m for m in carried if _same_rule(m, item)), None)
        if before is not None:
            item["effective_at"] = before["effective_at"]
        out.append(item)
    out.append(
        {
            "measure_id": KEEP_MEASURE_ID,
            "level": level,
            "action": "KEEP_CONTROL_RUNNING",
            "target_kind": "enterprise",
            "target_ids": [enterprise_id],
            "ramp_min": 0,
            "effective_at": start.isoformat(),
            "legal_text": "污染治理设施须正常运行，与生产设施同步启停。",
        }
    )
    return out


def _same_rule(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("action", "target_kind", "target_ids", "reduction_pct", "allowed_load_pct", "windows")
    return all(a.get(k) == b.get(k) for k in keys)


def plan(
    *,
    orders: Sequence[Any],
    lists: dict[int, dict[str, dict[str, list[dict[str, Any]]]]],
    view: RegistryView,
) -> dict[str, Piece]:
    """Every desired task of the approved `orders`, by task id (pure)."""
    spans = [s for row in orders for s in spans_of(row)]
    enterprises: dict[str, str] = {}
    for by_enterprise in lists.values():
        for enterprise_id, by_level in by_enterprise.items():
            snap = view.enterprise(enterprise_id)
            if snap is not None:
                enterprises[enterprise_id] = snap.district_code
            else:
                any_row = next(r for rows in by_level.values() for r in rows)
                enterprises.setdefault(enterprise_id, any_row["district_code"])
    out: dict[str, Piece] = {}
    for enterprise_id, district in sorted(enterprises.items()):
        covering = [s for s in spans if covers(s.districts, district)]
        previous: Piece | None = None
        for start, end, span in governing(covering):
            rows = lists.get(span.list_version, {}).get(enterprise_id, {}).get(span.level, [])
            if not rows:
                previous = None
                continue
            piece = Piece(
                task_id=task_id_of(span.alert_id, enterprise_id, start),
                alert_id=span.alert_id,
                enterprise_id=enterprise_id,
                start=start,
                end=end,
                level=span.level,
                list_version=span.list_version,
            )
            piece.measures = materialise(
                enterprise_id=enterprise_id,
                rows=rows,
                start=start,
                level=span.level,
                previous=previous,
                ramp_min=span.ramp_min,
            )
            out[piece.task_id] = piece
            previous = piece
    return out


async def relevant_orders(session: AsyncSession, *, now: datetime) -> list[Any]:
    """Approved orders that may still govern something (ended less than HORIZON ago)."""
    cutoff = now - HORIZON
    rows = (
        await session.execute(select(alert_order).where(alert_order.c.state == "approved"))
    ).mappings()
    out = []
    for row in rows:
        end = order_end(row)
        if end is None or end > cutoff:
            out.append(row)
    return out


async def decompose(
    session: AsyncSession,
    *,
    view: RegistryView,
    now: datetime,
    topic: str,
    reason: str,
) -> Result:
    """Bring the stored tasks in line with the approved orders; events in the outbox."""
    orders = await relevant_orders(session, now=now)
    versions = sorted({int(o["list_version"] or 0) for o in orders})
    levels = sorted({s["level"] for o in orders for s in o["segments"]})
    lists = {
        v: await measures.measures_for_levels(session, version=v, levels=levels) for v in versions
    }
    desired = plan(orders=orders, lists=lists, view=view)
    ids = [o["id"] for o in orders]
    stored = (
        {
            r["task_id"]: dict(r)
            for r in (
                await session.execute(select(task).where(task.c.alert_id.in_(ids)))
            ).mappings()
        }
        if ids
        else {}
    )
    result = Result()
    inserts: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for task_id, piece in desired.items():
        before = stored.get(task_id)
        if before is None:
            row = _row(piece, view, revision=1, change="issued", reason=reason, now=now)
            inserts.append(row)
            result.issued += 1
        else:
            if (
                before["valid_from"] == piece.start
                and before["valid_to"] == piece.end
                and before["level"] == piece.level
                and before["measures"] == piece.measures
            ):
                result.unchanged += 1
                continue
            cut = piece.end is not None and (
                before["valid_to"] is None or piece.end < before["valid_to"]
            )
            change = "ended" if cut else "changed"
            row = _row(
                piece, view, revision=before["revision"] + 1, change=change, reason=reason, now=now
            )
            await session.execute(
                update(task).where(task.c.task_id == task_id).values(**_updatable(row))
            )
            if change == "ended":
                result.ended += 1
            else:
                result.changed += 1
        history.append(_history(row))
        result.events.append(_event(row))
    for task_id, before in stored.items():
        if task_id in desired:
            continue
        end = before["valid_to"]
        if (
            before["change"] == "ended"
            and end is not None
            and end <= max(now, before["valid_from"])
        ):
            continue  # already ended for good
        new_end = max(before["valid_from"], min(end or _FAR, now))
        row = {
            **before,
            "valid_to": new_end,
            "revision": before["revision"] + 1,
            "change": "ended",
            "reason": reason,
            "updated_at": now,
        }
        await session.execute(
            update(task).where(task.c.task_id == task_id).values(**_updatable(row))
        )
        history.append(_history(row))
        result.events.append(_event(row))
        result.ended += 1
    for start in range(0, len(inserts), 1000):
        await session.execute(task.insert(), inserts[start : start + 1000])
    for start in range(0, len(history), 1000):
        await session.execute(task_history.insert(), history[start : start + 1000])
    messages = [encode(e, topic=topic) for e in result.events]
    for start in range(0, len(messages), 2000):
        await enqueue(session, OUTBOX, messages[start : start + 2000])
    return result


def _row(
    piece: Piece, view: RegistryView, *, revision: int, change: str, reason: str, now: datetime
) -> dict[str, Any]:
    snap = view.enterprise(piece.enterprise_id)
    return {
        "task_id": piece.task_id,
        "alert_id": piece.alert_id,
        "enterprise_id": piece.enterprise_id,
        "enterprise_name": snap.name if snap else None,
        "district_code": snap.district_code if snap else "",
        "industry_code": snap.industry_code if snap else None,
        "industry_name": snap.industry_name if snap else None,
        "performance_grade": snap.performance_grade if snap else None,
        "level": piece.level,
        "valid_from": piece.start,
        "valid_to": piece.end,
        "measures": piece.measures,
        "list_version": piece.list_version,
        "revision": revision,
        "change": change,
        "reason": reason,
        "updated_at": now,
    }


def _updatable(row: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "valid_from",
        "valid_to",
        "level",
        "measures",
        "list_version",
        "revision",
        "change",
        "reason",
        "updated_at",
        "enterprise_name",
        "district_code",
    )
    return {k: row[k] for k in keys if k in row}


def _history(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "task_id": row["task_id"],
        "revision": row["revision"],
        "change": row["change"],
        "valid_from": row["valid_from"],
        "valid_to": row["valid_to"],
        "level": row["level"],
        "measures": row["measures"],
        "reason": row["reason"],
    }


def _event(row: dict[str, Any]) -> ControlTaskChanged:
    return ControlTaskChanged(
        task_id=row["task_id"],
        alert_id=row["alert_id"],
        enterprise_id=row["enterprise_id"],
        change=row["change"],
        valid_from=row["valid_from"],
        valid_to=row["valid_to"],
        measures=row["measures"],
        level=row["level"],
        revision=row["revision"],
        district_code=row["district_code"] or None,
        list_version=row["list_version"],
        reason=row["reason"],
    )


async def active_tasks(
    session: AsyncSession, *, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Tasks in force at some time in [start, end)."""
    query = select(task).where(
        task.c.valid_from < end,
        or_(task.c.valid_to.is_(None), task.c.valid_to > start),
        task.c.valid_to.is_(None) | (task.c.valid_to > task.c.valid_from),
    )
    return [dict(r) for r in (await session.execute(query)).mappings()]


def by_enterprise(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[row["enterprise_id"]].append(row)
    return out
