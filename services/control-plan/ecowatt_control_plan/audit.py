"""Audit events (`audit.events`) for every change a person makes: written to the outbox in
the transaction of the change, so an audited change is never lost and a rolled-back one is
never reported."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ecowatt_kernel.audit import audit_event, mark_audited
from ecowatt_kernel.contracts import AuditEvent, encode
from ecowatt_kernel.identity import Identity
from ecowatt_kernel.outbox import enqueue
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan.access import jsonable
from ecowatt_control_plan.database import OUTBOX

_PENDING = "ecowatt_audited_requests"


async def record(
    session: AsyncSession,
    *,
    topic: str,
    identity: Identity,
    action: str,
    resource: str,
    details: dict[str, Any],
    request: Request | None = None,
    outcome: str = "success",
) -> None:
    """Enqueue one audit event in the caller's transaction; once it commits, the request is
    marked audited (`mark_committed`), so the gateway does not write a second event."""
    if request is not None:
        event = audit_event(
            request,
            action=action,
            resource=resource,
            identity=identity,
            outcome=outcome,  # type: ignore[arg-type]
            details=jsonable(details),
        )
        session.info.setdefault(_PENDING, []).append(request)
    else:
        event = AuditEvent(
            actor=identity.subject,
            actor_kind="api_key" if identity.kind == "api_key" else "user",
            action=action,
            resource=resource,
            outcome=outcome,  # type: ignore[arg-type]
            at=datetime.now(UTC),
            details=jsonable(details),
        )
    await enqueue(session, OUTBOX, [encode(event, topic=topic)])


def mark_committed(session: AsyncSession) -> None:
    """Mark the requests whose audit events the just-committed transaction carried."""
    for request in session.info.pop(_PENDING, []):
        mark_audited(request)
