"""What request handlers and jobs share inside one control-plan process.

`Runtime` is built at start-up (`service.on_startup`) and kept in the service context:
settings, the live archive (`RegistryView`) and its index, the outbox relay, the minute
recorder, the compliance judge and the clock (tests and the pipeline run on simulated time).
It is stored under `RUNTIME`; views get it through the `CurrentRuntime` dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from ecowatt_kernel.app import StateKey
from ecowatt_kernel.db import Database
from ecowatt_kernel.identity import Identity
from ecowatt_kernel.outbox import OutboxRelay
from ecowatt_kernel.problems import Problem
from ecowatt_kernel.registry_view import RegistryView
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan import audit
from ecowatt_control_plan.archive import ArchiveIndex
from ecowatt_control_plan.compliance.service import ComplianceJudge
from ecowatt_control_plan.settings import ControlPlanSettings
from ecowatt_control_plan.telemetry.service import Recorder


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: ControlPlanSettings
    database: Database
    view: RegistryView
    relay: OutboxRelay
    index: ArchiveIndex
    """Who owns which point and facility (from `view`), for the recorder and the judge."""
    recorder: Recorder
    """Keeps the minute history of `telemetry.points` that compliance is judged on."""
    judge: ComplianceJudge
    clock: Callable[[], datetime] = wall_clock
    jobs: list[Any] = field(default_factory=list)

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


RUNTIME = StateKey("runtime", Runtime)
CurrentRuntime = Annotated[Runtime, Depends(RUNTIME.from_request)]


def require_archive(runtime: Runtime) -> None:
    """503 while the archive (`registry.changes`) is still being read at start-up."""
    if not runtime.view.ready:
        raise Problem(
            "the archive is still loading; try again in a moment",
            status=503,
            type_suffix="archive-loading",
        )
