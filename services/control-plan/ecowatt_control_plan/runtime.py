"""What request handlers and jobs share inside one control-plan process.

`Runtime` is built at start-up (`service.on_startup`) and kept in the service context:
settings, the live archive (`RegistryView`), the outbox relay and the clock (tests and the
pipeline run on simulated time). Views get it through the `CurrentRuntime` dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from ecowatt_kernel.app import service_context
from ecowatt_kernel.db import Database
from ecowatt_kernel.identity import Identity
from ecowatt_kernel.outbox import OutboxRelay
from ecowatt_kernel.problems import Problem
from ecowatt_kernel.registry_view import RegistryView
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan import audit
from ecowatt_control_plan.settings import ControlPlanSettings

RUNTIME_KEY = "runtime"


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: ControlPlanSettings
    database: Database
    view: RegistryView
    relay: OutboxRelay
    clock: Callable[[], datetime] = wall_clock
    jobs: list[Any] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()

    async def audit(
        self,
        session: AsyncSession,
        *,
        identity: Identity,
        action: str,
        resource: str,
        details: dict[str, Any],
        request: Request | None = None,
        outcome: str = "success",
    ) -> None:
        """An audit event for what `identity` did, in the caller's transaction."""
        await audit.record(
            session,
            topic=self.settings.control_plan_audit_topic,
            identity=identity,
            action=action,
            resource=resource,
            details=details,
            request=request,
            outcome=outcome,
        )

    async def commit(self, session: AsyncSession) -> None:
        """Commit the request's transaction, then have the relay publish its events at once."""
        await session.commit()
        audit.mark_committed(session)
        self.relay.wake()


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = service_context(request).state[RUNTIME_KEY]
    return runtime


CurrentRuntime = Annotated[Runtime, Depends(_runtime)]


def require_archive(runtime: Runtime) -> None:
    """503 while the archive (`registry.changes`) is still being read at start-up."""
    if not runtime.view.ready:
        raise Problem(
            "the archive is still loading; try again in a moment",
            status=503,
            type_suffix="archive-loading",
        )
