"""Opening and extending supervision issues from judged hours; the handling workflow."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ecowatt_kernel.problems import Conflict, NotFound
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan.issues.models import MAX_EVIDENCE_HOURS, issue, journal

VIOLATIONS = frozenset({"未开启治污设备", "未响应停产", "未响应减产"})


async def record_hours(
    session: AsyncSession, *, hours: list[dict[str, Any]], now: datetime
) -> tuple[int, int]:
    """Open or extend issues for violating final hours; (opened, extended)."""
    hours = [h for h in hours if h["status"] in VIOLATIONS]
    if not hours:
        return 0, 0
    tasks = sorted({h["task_id"] for h in hours})
    open_rows: dict[tuple[str, str], dict[str, Any]] = {}
    for first in range(0, len(tasks), 5000):
        found = await session.execute(
            select(issue)
            .where(issue.c.task_id.in_(tasks[first : first + 5000]), issue.c.state != "closed")
            .with_for_update()
        )
        for r in found.mappings():
            open_rows[(r["task_id"], r["category"])] = dict(r)
    new_rows: dict[str, dict[str, Any]] = {}
    changed: dict[str, dict[str, Any]] = {}
    entries: list[dict[str, Any]] = []
    for h in sorted(hours, key=lambda h: h["hour_start"]):
        key = (h["task_id"], h["status"])
        entry = {
            "hour": h["hour_start"].isoformat(),
            "status": h["status"],
            "baseline_kwh": h.get("baseline_kwh"),
            "actual_kwh": h.get("actual_kwh"),
            "verdicts": h.get("verdicts", []),
        }
        row = open_rows.get(key)
        if row is None:
            issue_id = "I" + uuid.uuid4().hex[:12]
            row = {
                "id": issue_id,
                "enterprise_id": h["enterprise_id"],
                "enterprise_name": h.get("enterprise_name"),
                "district_code": h["district_code"],
                "task_id": h["task_id"],
                "alert_id": h["alert_id"],
                "category": h["status"],
                "state": "open",
                "opened_at": now,
                "first_hour": h["hour_start"],
                "last_hour": h["hour_start"],
                "hours": 1,
                "evidence": {"hours": [entry]},
                "updated_at": now,
            }
            open_rows[key] = new_rows[issue_id] = row
            entries.append(
                _entry(
                    issue_id,
                    "system:compliance",
                    "opened",
                    f"{h['status']}（判定时段 {entry['hour']}）",
                    {"hour": entry["hour"]},
                    now,
                )
            )
            entries.append(
                _entry(
                    issue_id,
                    "system:compliance",
                    "dispatched",
                    f"已下发至区县 {h['district_code']}",
                    {"district_code": h["district_code"]},
                    now,
                )
            )
            continue
        if entry["hour"] in {e["hour"] for e in row["evidence"]["hours"]}:
            continue
        row["evidence"] = {"hours": (row["evidence"]["hours"] + [entry])[-MAX_EVIDENCE_HOURS:]}
        row["hours"] += 1
        row["last_hour"] = max(row["last_hour"], h["hour_start"])
        row["first_hour"] = min(row["first_hour"], h["hour_start"])
        if row["id"] not in new_rows:
            changed[row["id"]] = row
    if new_rows:
        await session.execute(issue.insert(), list(new_rows.values()))
    if entries:
        await session.execute(journal.insert(), entries)
    if changed:
        await session.execute(
            issue.update()
            .where(issue.c.id == bindparam("key"))
            .values(
                evidence=bindparam("evidence"),
                hours=bindparam("hours"),
                last_hour=bindparam("last_hour"),
                first_hour=bindparam("first_hour"),
                updated_at=bindparam("now"),
            ),
            [
                {
                    "key": r["id"],
                    "evidence": r["evidence"],
                    "hours": r["hours"],
                    "last_hour": r["last_hour"],
                    "first_hour": r["first_hour"],
                    "now": now,
                }
                for r in changed.values()
            ],
        )
    return len(new_rows), len(changed)


def _entry(
    issue_id: str,
    actor: str,
    action: str,
    text: str,
    details: dict[str, Any],
    now: datetime,
    role: str | None = "system",
) -> dict[str, Any]:
    return {
        "issue_id": issue_id,
        "actor": actor,
        "role": role,
        "action": action,
        "text": text,
        "details": details,
        "at": now,
    }


async def load(
    session: AsyncSession, *, issue_id: str, condition: Any, lock: bool = False
) -> dict[str, Any]:
    """One issue inside the caller's scope, or 404."""
    query = select(issue).where(issue.c.id == issue_id, condition)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"issue {issue_id} not found")
    return dict(row)


async def act(
    session: AsyncSession,
    *,
    row: dict[str, Any],
    action: str,
    actor: str,
    role: str,
    text: str | None,
    details: dict[str, Any],
    now: datetime,
) -> None:
    """Apply one workflow step (feedback, verify, close, comment) and journal it."""
    state = row["state"]
    values: dict[str, Any] = {"updated_at": now}
    if action in ("feedback", "verify", "close") and state == "closed":
        raise Conflict("the issue is closed")
    if action == "feedback":
        values["state"] = "feedback" if state == "open" else state
    elif action == "verify":
        values |= {
            "state": "verified",
            "verification": details["result"],
            "verified_by": actor,
            "verified_at": now,
        }
    elif action == "close":
        if state != "verified":
            raise Conflict("an issue is closed (销号) only after it has been verified")
        values |= {"state": "closed", "closed_by": actor, "closed_at": now}
    await session.execute(issue.update().where(issue.c.id == row["id"]).values(**values))
    await session.execute(
        journal.insert().values(**_entry(row["id"], actor, action, text or "", details, now, role))
    )
