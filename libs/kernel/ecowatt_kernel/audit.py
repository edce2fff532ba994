"""Audit events of HTTP actions, without a second event for the same request.

The gateway writes one `audit.events` message for every request it forwards. A service that
knows more about an action than the gateway can (a device command's id, a login's user)
writes that request's event itself and marks the response; the gateway then writes none:

    event = audit_event(request, identity=identity, action="device.command",
                        resource=f"device:{mn}", details={"command_id": ...})
    await bus.publish([command_message, encode(event)])
    mark_audited(request)          # only after the event is published

`client_address` is the caller's address: the first hop of `X-Forwarded-For`, which the
gateway overwrites with the address it saw (so a client cannot choose it), else the peer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from starlette.requests import Request

from ecowatt_kernel.contracts import AuditEvent
from ecowatt_kernel.identity import Identity

__all__ = [
    "AUDITED_HEADER",
    "FORWARDED_FOR_HEADER",
    "audit_event",
    "client_address",
    "is_marked",
    "mark_audited",
]

AUDITED_HEADER = "X-EcoWatt-Audited"
"""Response header: the service published this request's audit event (the gateway strips it)."""
FORWARDED_FOR_HEADER = "X-Forwarded-For"

ActorKind = Literal["user", "api_key", "service", "device", "anonymous"]
Outcome = Literal["success", "denied", "failed"]


def client_address(request: Request) -> str | None:
    """The caller's address as the gateway saw it (else the TCP peer)."""
    forwarded = request.headers.get(FORWARDED_FOR_HEADER)
    if forwarded:
        first = forwarded.split(",")[0].strip()
        if first:
            return first[:64]
    return request.client.host if request.client else None


def audit_event(
    request: Request,
    *,
    action: str,
    resource: str,
    identity: Identity | None = None,
    actor: str | None = None,
    actor_kind: ActorKind | None = None,
    outcome: Outcome = "success",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """The audit event of an action taken in this request (publish it, then `mark_audited`)."""
    kind: ActorKind = actor_kind or (identity.kind if identity is not None else "anonymous")
    return AuditEvent(
        actor=actor or (identity.subject if identity is not None else "anonymous"),
        actor_kind=kind,
        action=action,
        resource=resource,
        outcome=outcome,
        at=datetime.now(UTC),
        source_ip=client_address(request),
        details={
            "method": request.method,
            "path": request.url.path,
            **({"name": identity.name} if identity is not None and identity.name else {}),
            **(details or {}),
        },
    )


def mark_audited(request: Request) -> None:
    """Tell the gateway (through the response header) that this request's event is written."""
    request.state.audited = True


def is_marked(request: Request) -> bool:
    return bool(getattr(request.state, "audited", False))
