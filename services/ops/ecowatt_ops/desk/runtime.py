"""What the desk's handlers and background jobs share while the service runs.

Background jobs, single-leader across replicas (one PostgreSQL advisory lock):

- escalation (`ECOWATT_OPS_ESCALATION_EVERY_S`, 30 s; woken at once after a case is opened);
- platform signals (`ECOWATT_OPS_SIGNALS_EVERY_S`, 30 s; `ECOWATT_OPS_SIGNALS_ENABLED`);
- the monthly abnormal-event report (the 1st, 00:15 local time; `ECOWATT_OPS_MONTHLY_REPORT`).

`clock` is the one source of "now" for the desk's handlers and jobs; tests replace it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Annotated, Any

from ecowatt_kernel.app import ServiceContext, StateKey
from ecowatt_kernel.scheduler import AdvisoryLeader, DailyJob, PeriodicJob
from fastapi import Depends

from ecowatt_ops.escalation.service import (
    Escalated,
    Notifier,
    notifier_from_settings,
    run_escalations,
)
from ecowatt_ops.reports.service import store_monthly_report
from ecowatt_ops.settings import OpsSettings
from ecowatt_ops.signals.service import PlatformWatcher

__all__ = ["RUNTIME", "DeskRuntime", "Runtime", "start_desk", "stop_desk"]

_logger = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class DeskRuntime:
    context: ServiceContext
    settings: OpsSettings
    notifier: Notifier
    watcher: PlatformWatcher
    clock: Callable[[], datetime] = _utcnow
    jobs: list[Any] = field(default_factory=list)
    escalation_job: PeriodicJob | None = None

    def now(self) -> datetime:
        return self.clock()

    async def escalate(self) -> list[Escalated]:
        """One escalation pass now."""
        return await run_escalations(
            db=self.context.database, notifier=self.notifier, settings=self.settings, now=self.now()
        )

    def wake_escalation(self) -> None:
        """Announce a new case without waiting for the next turn."""
        if self.escalation_job is not None:
            self.escalation_job.wake()

    async def watch(self) -> None:
        await self.watcher.run(context=self.context, now=self.now())

    async def monthly(self, day: Any) -> None:
        await store_monthly_report(
            db=self.context.database,
            day=day,
            settings=self.settings,
            notifier=self.notifier,
            now=self.now(),
        )


async def start_desk(context: ServiceContext) -> None:
    """Build the runtime and start the background jobs (the service's start-up hook)."""
    settings = context.settings
    assert isinstance(settings, OpsSettings)
    runtime = DeskRuntime(
        context=context,
        settings=settings,
        notifier=notifier_from_settings(settings),
        watcher=PlatformWatcher(settings),
    )
    RUNTIME.set(context, runtime)
    leader = AdvisoryLeader(context.database.engine, "ops.desk")
    runtime.escalation_job = PeriodicJob(
        name="ops.escalation",
        run=runtime.escalate,
        every_s=settings.ops_escalation_every_s,
        leader=leader,
        initial_delay_s=min(5.0, settings.ops_escalation_every_s),
    )
    runtime.jobs.append(runtime.escalation_job)
    if settings.ops_signals_enabled:
        runtime.jobs.append(
            PeriodicJob(
                name="ops.platform-signals",
                run=runtime.watch,
                every_s=settings.ops_signals_every_s,
                leader=leader,
                initial_delay_s=settings.ops_signals_every_s,
            )
        )
    if settings.ops_monthly_report:
        runtime.jobs.append(
            DailyJob(
                name="ops.monthly-report",
                run=runtime.monthly,
                timezone=settings.timezone,
                at=time(0, 15),
                leader=leader,
            )
        )
    for job in runtime.jobs:
        await job.start()


async def stop_desk(context: ServiceContext) -> None:
    """Stop the background jobs (the service's shutdown hook)."""
    runtime = RUNTIME.find(context)
    if runtime is None:
        return
    for job in reversed(runtime.jobs):
        await job.stop()


RUNTIME = StateKey("desk_runtime", DeskRuntime)
Runtime = Annotated[DeskRuntime, Depends(RUNTIME.from_request)]
