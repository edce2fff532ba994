"""History endpoint: threshold and association changes, with actor, time and reason."""

from __future__ import annotations

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity
from ecowatt_kernel.pagination import Page, PageParams, SortParam, fetch_sorted_page
from ecowatt_kernel.times import LocalDateTime
from fastapi import APIRouter, Query
from sqlalchemy import select

from ecowatt_registry import access
from ecowatt_registry.enterprises.models import Enterprise
from ecowatt_registry.history.models import HistoryRead, HistoryRecord

router = APIRouter(prefix="/history", tags=["history"])


@router.get("", summary="Changes of thresholds and associations, newest first")
async def list_history(
    db_session: DbSession,
    identity: CurrentIdentity,
    page: PageParams,
    sort: SortParam = None,
    entity: str | None = Query(None, description="enterprise, facility, point, control_group, …"),
    entity_id: str | None = None,
    enterprise_id: str | None = None,
    field: str | None = Query(None, description="Only changes of this field, e.g. start_stop_kw"),
    since: LocalDateTime | None = None,
    until: LocalDateTime | None = None,
) -> Page[HistoryRead]:
    query = select(HistoryRecord)
    if not identity.scope.all:
        # Only a limited scope needs the enterprise (district) of each record.
        query = query.outerjoin(Enterprise, HistoryRecord.enterprise_id == Enterprise.id).where(
            access.visible(identity.scope)
        )
    if entity:
        query = query.where(HistoryRecord.entity == entity)
    if entity_id:
        query = query.where(HistoryRecord.entity_id == entity_id)
    if enterprise_id:
        query = query.where(HistoryRecord.enterprise_id == enterprise_id)
    if field:
        query = query.where(HistoryRecord.changes.has_key(field))
    if since:
        query = query.where(HistoryRecord.changed_at >= since)
    if until:
        query = query.where(HistoryRecord.changed_at < until)
    rows, total = await fetch_sorted_page(
        db_session,
        query,
        page,
        sort=sort,
        allowed={"changed_at": HistoryRecord.changed_at},
        default="-changed_at",
        tiebreak=HistoryRecord.id.desc(),
    )
    items = [HistoryRead.model_validate(row[0], from_attributes=True) for row in rows]
    return Page[HistoryRead].of(items, total, page)
