"""Storing a judged hour: verdicts and enterprise statuses (upserts), `control.compliance`
events for final hours whose verdict changed (with a new revision), supervision issues."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ecowatt_kernel.contracts import ComplianceVerdict, encode
from ecowatt_kernel.outbox import enqueue
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan.compliance import rules
from ecowatt_control_plan.compliance.models import PassResult, enterprise_hour, verdict
from ecowatt_control_plan.database import OUTBOX
from ecowatt_control_plan.issues import service as issues


async def store_hour(
    session: AsyncSession,
    *,
    verdict_rows: list[dict[str, Any]],
    hour_rows: list[dict[str, Any]],
    now: datetime,
    result: PassResult,
    topic: str,
) -> None:
    """Write one hour's verdicts and statuses; publish the final ones that changed; open or
    extend supervision issues (all in the caller's transaction)."""
    if not hour_rows:
        return
    # Everything stored for this hour, in one indexed read (the pass works hour by hour).
    hour = hour_rows[0]["hour_start"]
    before: dict[tuple[str, str, datetime], Any] = {}
    found = await session.execute(
        select(
            verdict.c.task_id,
            verdict.c.target_id,
            verdict.c.hour_start,
            verdict.c.revision,
            verdict.c.published_verdict,
        ).where(verdict.c.hour_start == hour)
    )
    for r in found.all():
        before[(r.task_id, r.target_id, r.hour_start)] = r
    events: list[ComplianceVerdict] = []
    for v in verdict_rows:
        old = before.get((v["task_id"], v["target_id"], v["hour_start"]))
        revision = old.revision if old else 0
        published = old.published_verdict if old else None
        if not v["provisional"] and published != v["verdict"]:
            revision += 1
            published = v["verdict"]
            events.append(
                ComplianceVerdict(
                    enterprise_id=v["enterprise_id"],
                    task_id=v["task_id"],
                    target_id=v["target_id"],
                    hour_start=v["hour_start"],
                    verdict=v["verdict"],
                    evidence=_public_evidence(v),
                    status=None,
                    alert_id=v["alert_id"],
                    action=v["action"],
                    target_kind=v["target_kind"],
                    district_code=v["district_code"] or None,
                    revision=revision,
                )
            )
        v["revision"] = max(revision, 1)
        v["published_verdict"] = published
    old_hours: dict[tuple[str, datetime], Any] = {}
    found = await session.execute(
        select(
            enterprise_hour.c.enterprise_id,
            enterprise_hour.c.hour_start,
            enterprise_hour.c.revision,
            enterprise_hour.c.published_status,
        ).where(enterprise_hour.c.hour_start == hour)
    )
    for r in found.all():
        old_hours[(r.enterprise_id, r.hour_start)] = r
    newly_final: list[dict[str, Any]] = []
    for h in hour_rows:
        old = old_hours.get((h["enterprise_id"], h["hour_start"]))
        revision = old.revision if old else 0
        published = old.published_status if old else None
        if not h["provisional"] and published != h["status"]:
            revision += 1
            published = h["status"]
            newly_final.append(h)
            events.append(
                ComplianceVerdict(
                    enterprise_id=h["enterprise_id"],
                    task_id=h["task_id"],
                    target_id=h["enterprise_id"],
                    hour_start=h["hour_start"],
                    verdict=_status_verdict(h["status"]),
                    evidence={
                        "baseline_kwh": h["baseline_kwh"],
                        "actual_kwh": h["actual_kwh"],
                        "producing": h["producing"],
                        "counts": h["counts"],
                    },
                    alert_id=h["alert_id"],
                    action="ENTERPRISE",
                    target_kind="enterprise",
                    status=h["status"],
                    district_code=h["district_code"] or None,
                    revision=revision,
                )
            )
        h["revision"] = max(revision, 1)
        h["published_status"] = published
    await _upsert(session, verdict, verdict_rows, ("task_id", "target_id", "hour_start"))
    await _upsert(
        session,
        enterprise_hour,
        [{k: v for k, v in h.items() if k in enterprise_hour.c} for h in hour_rows],
        ("enterprise_id", "hour_start"),
    )
    messages = [encode(e, topic=topic) for e in events]
    for start in range(0, len(messages), 2000):
        await enqueue(session, OUTBOX, messages[start : start + 2000])
    opened, extended = await issues.record_hours(session, hours=newly_final, now=now)
    result.verdicts += len(verdict_rows)
    result.published += len(events)
    result.issues_opened += opened
    result.issues_updated += extended


def _status_verdict(status: str) -> Literal["compliant", "non_compliant", "unknown"]:
    if status in ("合规生产", "停工"):
        return rules.COMPLIANT
    if status == "离线/无法判定":
        return rules.UNKNOWN
    return rules.NON_COMPLIANT


def _public_evidence(v: dict[str, Any]) -> dict[str, Any]:
    keep = {k: val for k, val in v["evidence"].items() if k not in ("curve_kw",)}
    return keep | {"baseline_kwh": v["baseline_kwh"], "actual_kwh": v["actual_kwh"]}


def rounded(value: float | None) -> float | None:
    """Energies to the watt-hour (kWh, 3 decimals)."""
    return None if value is None else round(value, 3)


async def _upsert(
    session: AsyncSession, table: Any, rows: list[dict[str, Any]], keys: tuple[str, ...]
) -> None:
    if not rows:
        return
    columns = [c for c in rows[0] if c in table.c]
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={c: statement.excluded[c] for c in columns if c not in keys}
        | {"evaluated_at": func.now()},
    )
    # One statement, executed for many rows (compiled once; SQLAlchemy batches the values).
    await session.execute(statement, [{c: r.get(c) for c in columns} for r in rows])
