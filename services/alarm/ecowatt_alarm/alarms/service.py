"""Reading alarms: lists, one alarm with its journal, statistics, export rows. Every query is
filtered by the caller's data scope; an alarm outside it is not found."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.frame_links import frame_links
from ecowatt_kernel.identity import Identity
from ecowatt_kernel.pagination import Page, PageRequest, fetch_page
from ecowatt_kernel.problems import NotFound, Problem
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_alarm import tables as T
from ecowatt_alarm.alarms.models import SUMMARY, alarm_scope, summary

__all__ = [
    "EVIDENCE_LEAD",
    "alarm_detail",
    "alarm_frames",
    "export_rows",
    "list_alarms",
    "load_alarm",
    "statistics",
]

EVIDENCE_LEAD = timedelta(minutes=30)
"""The evidence series starts this long before `first_at` (`engine/lifecycle`): so do the
links to its frames."""


async def list_alarms(
    *,
    session: AsyncSession,
    identity: Identity,
    filters: list[ColumnElement[bool]],
    page: PageRequest,
) -> Page[dict[str, Any]]:
    """One page of the alarms in scope matching `filters`, newest first."""
    query = (
        select(*SUMMARY)
        .where(and_(alarm_scope(identity.scope), *filters))
        .order_by(T.alarm.c.first_at.desc(), T.alarm.c.id)
    )
    rows, total = await fetch_page(session, query, page)
    return Page.of([summary(r._mapping) for r in rows], total, page)


async def export_rows(
    *,
    session: AsyncSession,
    identity: Identity,
    filters: list[ColumnElement[bool]],
    timezone: str,
    max_rows: int,
) -> list[dict[str, Any]]:
    """The alarms of an export, in local time; 422 when there are more than `max_rows`."""
    where = and_(alarm_scope(identity.scope), *filters)
    count = int(await session.scalar(select(func.count()).select_from(T.alarm).where(where)) or 0)
    if count > max_rows:
        raise Problem(
            f"the export would hold {count} alarms; at most {max_rows} per workbook "
            "(ECOWATT_ALARM_EXPORT_MAX_ROWS): narrow the filters (from, to, district, rule)",
            status=422,
            type_suffix="export-too-large",
        )
    rows = await session.execute(
        select(*SUMMARY).where(where).order_by(T.alarm.c.first_at.desc()).limit(max_rows)
    )
    zone = ZoneInfo(timezone)
    items = []
    for r in rows.mappings():
        d = summary(r)
        for k in ("first_at", "last_at", "discovered_at"):
            if d[k] is not None:
                d[k] = d[k].astimezone(zone)
        items.append(d)
    return items


async def load_alarm(*, session: AsyncSession, alarm_id: str, identity: Identity) -> Any:
    """The alarm row, or 404 when it does not exist or lies outside the caller's scope."""
    row = (
        (
            await session.execute(
                select(T.alarm).where(T.alarm.c.id == alarm_id, alarm_scope(identity.scope))
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"alarm {alarm_id} not found")
    return row


def alarm_frames(*, row: Any, view: RegistryView) -> list[dict[str, Any]]:
    """Per device behind the alarm's points (and its subject, a device for OFFLINE), the
    archive query of the frames of its evidence window: first_at − 30 min … recovered_at or
    last_at."""
    devices: dict[str, set[str]] = {}
    if row["subject_kind"] == "device":
        devices[row["subject_id"]] = set()
    point_ids = set(row["point_ids"] or ()) | set(((row["evidence"] or {}).get("points")) or ())
    for point_id in point_ids:
        point = view.point(point_id)
        if point is not None and point.device_mn:
            devices.setdefault(point.device_mn, set()).add(point_id)
    end = row["recovered_at"] or row["last_at"]
    return frame_links(devices, start=row["first_at"] - EVIDENCE_LEAD, end=end)


async def alarm_detail(
    *, session: AsyncSession, alarm_id: str, identity: Identity, view: RegistryView
) -> dict[str, Any]:
    """One alarm with its evidence, journal, attachments and links to its raw frames."""
    row = await load_alarm(session=session, alarm_id=alarm_id, identity=identity)
    journal = await session.execute(
        select(T.journal).where(T.journal.c.alarm_id == alarm_id).order_by(T.journal.c.id)
    )
    files = await session.execute(
        select(
            T.attachment.c.id,
            T.attachment.c.journal_id,
            T.attachment.c.filename,
            T.attachment.c.content_type,
            T.attachment.c.size,
            T.attachment.c.sha256,
            T.attachment.c.uploaded_by,
            T.attachment.c.uploaded_at,
        )
        .where(T.attachment.c.alarm_id == alarm_id)
        .order_by(T.attachment.c.uploaded_at)
    )
    out = summary({k: row[k] for k in (c.name for c in SUMMARY)})
    out.update(
        facility_ids=row["facility_ids"],
        point_ids=row["point_ids"],
        detail=row["detail"],
        evidence=row["evidence"],
        journal=[dict(j) for j in journal.mappings()],
        attachments=[dict(f) for f in files.mappings()],
        frames=alarm_frames(row=row, view=view),
    )
    return out


async def statistics(
    *,
    session: AsyncSession,
    identity: Identity,
    filters: list[ColumnElement[bool]],
    by: str,
    timezone: str,
) -> list[dict[str, Any]]:
    """Counts (total, active, closed, suppressed) grouped by rule, district, industry, day,
    level or status."""
    a = T.alarm.c
    key: Any = {
        "rule": a.rule_code,
        "district": a.district_code,
        "industry": a.industry_code,
        "level": a.level,
        "status": a.status,
        "day": func.to_char(func.timezone(timezone, a.first_at), "YYYY-MM-DD"),
    }[by]
    rows = await session.execute(
        select(
            key.label("key"),
            func.count().label("count"),
            func.count().filter(a.active).label("active"),
            func.count().filter(a.status == "closed").label("closed"),
            func.count().filter(a.status == "suppressed").label("suppressed"),
        )
        .where(and_(alarm_scope(identity.scope), *filters))
        .group_by(key)
        .order_by(key)
    )
    return [dict(r) for r in rows.mappings()]
