"""Who may do what on the desk, who did it, and the audit event of each change."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from ecowatt_kernel.app import service_context
from ecowatt_kernel.audit import audit_event, mark_audited
from ecowatt_kernel.contracts import encode
from ecowatt_kernel.identity import Identity, Role, require_roles
from starlette.requests import Request

__all__ = [
    "ALERTMANAGER",
    "ESCALATION",
    "PLATFORM",
    "Actor",
    "Calendar",
    "Commenters",
    "Editors",
    "Operators",
    "People",
    "Readers",
    "Reporters",
    "Requesters",
    "Verifiers",
    "publish_audit",
]

_logger = logging.getLogger(__name__)

A, CS, DO, EU, OM, AU = (
    Role.ADMIN,
    Role.CITY_SUPERVISOR,
    Role.DISTRICT_OFFICER,
    Role.ENTERPRISE_USER,
    Role.OM_OPERATOR,
    Role.AUDITOR,
)

# Incidents are faults of the platform: bureau staff, O&M and auditors read them; O&M works
# them; the bureau (the customer whose service was restored) verifies them.
Readers = Annotated[Identity, require_roles(CS, DO, OM, AU)]
Reporters = Annotated[Identity, require_roles(CS, DO, OM)]
"""Open an incident by hand, comment on one."""
Operators = Annotated[Identity, require_roles(OM)]
"""Work a case: respond, workaround, root cause, resolve, assign, review; answer requests."""
Verifiers = Annotated[Identity, require_roles(CS)]
"""Confirm an incident's resolution (the bureau)."""
Commenters = Annotated[Identity, require_roles(CS, DO, OM)]
Requesters = Annotated[Identity, require_roles(CS, DO, EU, OM)]
"""Raise support requests (enterprise users for their own enterprise)."""
Editors = Annotated[Identity, require_roles(CS, OM)]
"""Write knowledge-base articles, reopen incidents, store reports, manage contacts."""
People = Annotated[Identity, require_roles(CS, DO, EU, OM, AU)]
"""Every person with an account: support requests and the knowledge base, filtered by scope
and visibility."""
Calendar = Annotated[Identity, require_roles(CS)]
"""Set working days and holidays (the calendar the supplier's clocks are measured on)."""


@dataclass(frozen=True)
class Actor:
    """Who did something: a person's subject and display name, or a part of the platform."""

    subject: str
    name: str | None = None

    @classmethod
    def of(cls, identity: Identity) -> Actor:
        return cls(identity.subject, identity.name)


ALERTMANAGER = Actor("alertmanager", "Alertmanager")
PLATFORM = Actor("ops.platform", "平台自检")
ESCALATION = Actor("ops.escalation", "升级提醒")


async def publish_audit(
    request: Request,
    *,
    identity: Identity | None,
    action: str,
    resource: str,
    details: dict[str, Any] | None = None,
    actor: Actor | None = None,
) -> None:
    """Publish the audit event of a committed change and tell the gateway not to write a
    second one; if the bus refuses, the gateway's own event still records the request."""
    event = audit_event(
        request,
        identity=identity,
        actor=actor.subject if actor is not None else None,
        actor_kind="service" if actor is not None else None,
        action=action,
        resource=resource,
        details=details,
    )
    try:
        await service_context(request).bus.publish([encode(event)])
    except Exception as exc:
        _logger.warning(
            "audit event %s not published (the gateway records the request): %s", action, exc
        )
        return
    mark_audited(request)
