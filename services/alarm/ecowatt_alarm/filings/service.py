"""Filings: filed by an enterprise (or O&M, or the bureau) for an enterprise in scope,
approved or rejected by the bureau, withdrawn; approved ones suppress alarms."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from ecowatt_kernel.identity import Identity, Role
from ecowatt_kernel.pagination import Page, PageRequest, fetch_page
from ecowatt_kernel.problems import Conflict, Forbidden, NotFound, Problem
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_alarm import tables as T
from ecowatt_alarm.dependencies import BUREAU_ROLES
from ecowatt_alarm.filings.models import FilingIn

__all__ = ["decide", "file_outage", "list_filings"]


async def file_outage(
    *, session: AsyncSession, view: RegistryView, body: FilingIn, identity: Identity
) -> dict[str, Any]:
    """A pending filing for an enterprise in the caller's scope."""
    enterprise = view.enterprise(body.enterprise_id)
    district = enterprise.district_code if enterprise else None
    if not identity.scope.allows(district=district, enterprise_id=body.enterprise_id):
        raise NotFound(f"enterprise {body.enterprise_id} not found")
    if body.ends_at <= body.starts_at:
        raise Problem("ends_at must be after starts_at", status=422)
    row = (
        (
            await session.execute(
                T.filing.insert()
                .values(
                    id=str(uuid.uuid4()),
                    enterprise_id=body.enterprise_id,
                    district_code=district,
                    facility_ids=body.facility_ids,
                    reason=body.reason,
                    category=body.category,
                    starts_at=body.starts_at,
                    ends_at=body.ends_at,
                    status="pending",
                    filed_by=identity.subject,
                )
                .returning(*T.filing.c)
            )
        )
        .mappings()
        .one()
    )
    return dict(row)


async def list_filings(
    *,
    session: AsyncSession,
    identity: Identity,
    page: PageRequest,
    status: str | None = None,
    enterprise_id: str | None = None,
) -> Page[dict[str, Any]]:
    """Filings in the caller's scope, newest first."""
    f = T.filing.c
    where = [
        identity.scope.where(district_column=f.district_code, enterprise_column=f.enterprise_id)
    ]
    if status:
        where.append(f.status == status)
    if enterprise_id:
        where.append(f.enterprise_id == enterprise_id)
    query = select(T.filing).where(*where).order_by(f.filed_at.desc(), f.id)
    rows, total = await fetch_page(session, query, page)
    return Page.of([dict(r._mapping) for r in rows], total, page)


async def decide(
    *,
    session: AsyncSession,
    filing_id: str,
    status: str,
    note: str | None,
    identity: Identity,
    allowed_from: tuple[str, ...],
    bureau_from: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Move a filing in scope to `status` (from one of `allowed_from`, else 409; from one
    of `bureau_from` only by the bureau, else 403)."""
    f = T.filing.c
    row = (
        (
            await session.execute(
                select(T.filing)
                .where(
                    f.id == filing_id,
                    identity.scope.where(
                        district_column=f.district_code, enterprise_column=f.enterprise_id
                    ),
                )
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"filing {filing_id} not found")
    if row["status"] not in allowed_from:
        raise Conflict(f"the filing is {row['status']}")
    if row["status"] in bureau_from and not identity.has_any_role(Role.ADMIN, *BUREAU_ROLES):
        raise Forbidden(
            f"the filing is {row['status']}: only the bureau (市局/区县分局) may withdraw it"
        )
    new = (
        (
            await session.execute(
                update(T.filing)
                .where(f.id == filing_id)
                .values(
                    status=status,
                    decided_by=identity.subject,
                    decided_at=datetime.now(UTC),
                    decision_note=note,
                )
                .returning(*T.filing.c)
            )
        )
        .mappings()
        .one()
    )
    return dict(new)
