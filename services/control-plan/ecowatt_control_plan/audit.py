"""Audit events (`audit.events`) for every change a person makes: written to the outbox in
the transaction of the change, so an audited change is never lost and a rolled-back one is
never reported."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ecowatt_kernel.contracts import AuditEvent, encode
from ecowatt_kernel.identity import Identity
from ecowatt_kernel.outbox import enqueue
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan.access import jsonable
from ecowatt_control_plan.database import OUTBOX


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
    """Enqueue one audit event in the caller's transaction."""
    event = AuditEvent(
        actor=identity.subject,
        actor_kind="api_key" if identity.kind == "api_key" else "user",
        action=action,
        resource=resource,
        outcome=outcome,  # type: ignore[arg-type]
        at=datetime.now(UTC),
        source_ip=request.client.host if request is not None and request.client else None,
        details=jsonable(details),
    )
    await enqueue(session, OUTBOX, [encode(event, topic=topic)])
