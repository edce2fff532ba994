"""Filing endpoints: file, list, approve, reject, withdraw."""

from __future__ import annotations

from typing import Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity
from ecowatt_kernel.pagination import Page, PageParams
from fastapi import APIRouter

from ecowatt_alarm.dependencies import Bureau, Filer, Processor, View
from ecowatt_alarm.filings import service
from ecowatt_alarm.filings.models import Decision, FilingIn

router = APIRouter(tags=["filings"])


@router.post("/filings", status_code=201, summary="File a planned outage (计划停运报备)")
async def file_outage(
    body: FilingIn, session: DbSession, view: View, identity: Filer
) -> dict[str, Any]:
    row = await service.file_outage(session=session, view=view, body=body, identity=identity)
    await session.commit()
    return row


@router.get("/filings", summary="Planned-outage filings in scope")
async def list_filings(
    identity: CurrentIdentity,
    session: DbSession,
    page: PageParams,
    status: str | None = None,
    enterprise_id: str | None = None,
) -> Page[dict[str, Any]]:
    return await service.list_filings(
        session=session, identity=identity, page=page, status=status, enterprise_id=enterprise_id
    )


async def _decide(
    session: DbSession,
    processor: Processor,
    identity: Any,
    filing_id: str,
    status: str,
    note: str | None,
    allowed_from: tuple[str, ...],
    bureau_from: tuple[str, ...] = (),
) -> dict[str, Any]:
    row = await service.decide(
        session=session,
        filing_id=filing_id,
        status=status,
        note=note,
        identity=identity,
        allowed_from=allowed_from,
        bureau_from=bureau_from,
    )
    await session.commit()
    processor.filing_changed(row)
    return row


@router.post("/filings/{filing_id}/approve", summary="Approve a filing (bureau)")
async def approve(
    filing_id: str, body: Decision, session: DbSession, processor: Processor, identity: Bureau
) -> dict[str, Any]:
    return await _decide(
        session, processor, identity, filing_id, "approved", body.note, ("pending",)
    )


@router.post("/filings/{filing_id}/reject", summary="Reject a filing (bureau)")
async def reject(
    filing_id: str, body: Decision, session: DbSession, processor: Processor, identity: Bureau
) -> dict[str, Any]:
    return await _decide(
        session, processor, identity, filing_id, "rejected", body.note, ("pending",)
    )


@router.post(
    "/filings/{filing_id}/withdraw",
    summary="Withdraw a filing (an approved one: the bureau only — it suppresses alarms)",
)
async def withdraw(
    filing_id: str,
    body: Decision,
    session: DbSession,
    processor: Processor,
    identity: CurrentIdentity,
) -> dict[str, Any]:
    return await _decide(
        session,
        processor,
        identity,
        filing_id,
        "withdrawn",
        body.note,
        ("pending", "approved"),
        bureau_from=("approved",),
    )
