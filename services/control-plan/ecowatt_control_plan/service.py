"""The control-plan service definition: what `create_app` builds and standalone mode mounts.

`on_startup` reads the archive (`RegistryView`), starts the outbox relay, subscribes the
telemetry recorder and starts the jobs:

| group / job | topic / period | |
|---|---|---|
| `<prefix>.points` | `telemetry.points` | minute values per point and hour (`telemetry`) |
| `control-plan.registry-view.<id>` | `registry.changes` | the live archive |
| `control-plan.compliance` | every `pass_every_s` (one replica leads) | the compliance pass |
| `control-plan.baselines` | daily 00:20 local (one replica leads) | the day's baselines |
| `control-plan.retention` | daily 03:10 local (one replica leads) | drops old data |

Events (`control.tasks`, `control.compliance`, `audit.events`) leave through the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path

from ecowatt_kernel.app import ServiceContext, ServiceSpec, StateKey
from ecowatt_kernel.contracts import TOPICS, TopicSpec
from ecowatt_kernel.outbox import OutboxRelay
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.scheduler import AdvisoryLeader, DailyJob, PeriodicJob

from ecowatt_control_plan.alerts.views import router as alerts
from ecowatt_control_plan.archive import ArchiveIndex
from ecowatt_control_plan.compliance.service import ComplianceJudge
from ecowatt_control_plan.compliance.views import router as compliance
from ecowatt_control_plan.database import OUTBOX
from ecowatt_control_plan.issues.views import router as issues
from ecowatt_control_plan.measures.views import router as measures
from ecowatt_control_plan.reports.views import router as reports
from ecowatt_control_plan.runtime import RUNTIME, Runtime, wall_clock
from ecowatt_control_plan.settings import ControlPlanSettings
from ecowatt_control_plan.synthetic.service import seed_list
from ecowatt_control_plan.synthetic.views import router as admin
from ecowatt_control_plan.tasks.views import router as tasks
from ecowatt_control_plan.telemetry.service import Recorder

__all__ = ["SERVICE", "build_service"]

_logger = logging.getLogger(__name__)
SEED_TASK: StateKey[asyncio.Task[None]] = StateKey("seed_task", asyncio.Task)


def _spec(name: str, template: str) -> TopicSpec:
    base = TOPICS[template]
    return TopicSpec(
        name, base.key, base.description, base.partitions, base.compacted, base.retention_ms
    )


async def _seed_when_ready(runtime: Runtime) -> None:
    """Generate the synthetic list once the archive has enterprises (make run)."""
    await runtime.view.wait_ready(timeout_s=3600)
    changed = asyncio.Event()
    runtime.view.on_change(lambda *_: changed.set())
    # A freshly seeded archive arrives over a while: wait for it, then for 10 quiet seconds.
    while not runtime.view.all("facility"):
        changed.clear()
        await changed.wait()
    while True:
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), 10.0)
        except TimeoutError:
            break
    async with runtime.database.transaction() as session:
        version = await seed_list(
            session,
            view=runtime.view,
            seed=runtime.settings.control_plan_seed,
            actor="system:start-up",
        )
    if version is not None:
        _logger.info("synthetic reduction list written as version %d", version)


def build_service(*, clock: Callable[[], datetime] | None = None) -> ServiceSpec:
    """The service spec; tests and the pipeline pass a clock (simulated time)."""

    async def startup(ctx: ServiceContext) -> None:
        await on_startup(ctx, clock=clock or wall_clock)

    return ServiceSpec(
        name="control-plan",
        title="EcoWatt control plans (重污染天气应急)",
        description=(
            "Owns the emergency reduction list (应急减排清单, one sheet per alert level, with "
            "versions), alert orders and their approvals, per-enterprise tasks "
            "(`control.tasks`), hourly compliance from the meters (`control.compliance`), "
            "supervision issues for districts, and the reports of a control period."
        ),
        settings_class=ControlPlanSettings,
        schema="control_plan",
        migrations=Path(__file__).parent / "migrations",
        on_startup=startup,
        on_shutdown=on_shutdown,
        routers=[measures, alerts, tasks, compliance, issues, reports, admin],
    )


async def on_startup(ctx: ServiceContext, *, clock: Callable[[], datetime] = wall_clock) -> None:
    settings = ctx.settings
    assert isinstance(settings, ControlPlanSettings)
    await ctx.bus.ensure_topics(
        [
            _spec(settings.control_plan_points_topic, "telemetry.points"),
            _spec(settings.control_plan_registry_topic, "registry.changes"),
            _spec(settings.control_plan_tasks_topic, "control.tasks"),
            _spec(settings.control_plan_compliance_topic, "control.compliance"),
            _spec(settings.control_plan_audit_topic, "audit.events"),
        ]
    )
    view = RegistryView(topic=settings.control_plan_registry_topic)
    ctx.subscriptions.append(
        await view.attach(ctx.bus, group_prefix=settings.control_plan_consumer_prefix)
    )
    relay = OutboxRelay(
        engine=ctx.database.engine,
        bus=ctx.bus,
        table=OUTBOX,
        poll_interval_s=settings.control_plan_outbox_poll_s,
    )
    index = ArchiveIndex(view)
    recorder = Recorder(
        database=ctx.database,
        index=index,
        retention_days=settings.control_plan_minute_retention_days,
    )
    judge = ComplianceJudge(database=ctx.database, index=index, settings=settings, clock=clock)
    runtime = Runtime(
        settings=settings,
        database=ctx.database,
        view=view,
        relay=relay,
        index=index,
        recorder=recorder,
        judge=judge,
        clock=clock,
    )
    RUNTIME.set(ctx, runtime)
    ctx.subscriptions.append(
        await ctx.bus.subscribe(
            group=f"{settings.control_plan_consumer_prefix}.points",
            topics=[settings.control_plan_points_topic],
            handler=recorder.handle,
            max_batch=2000,
            concurrent_partitions=True,
        )
    )

    async def compliance_pass() -> None:
        if view.ready:
            result = await judge.run()
            if result.published:
                relay.wake()

    async def retention(_: date) -> None:
        await recorder.purge(
            now=clock(), hour_retention_days=settings.control_plan_hour_retention_days
        )

    async def baselines(closed: date) -> None:
        count = await judge.prepare_baselines(day=closed + timedelta(days=1))
        _logger.info("baselines of %s: %d points", closed + timedelta(days=1), count)

    runtime.jobs = [
        DailyJob(
            name="control-plan.retention",
            run=retention,
            timezone=settings.timezone,
            at=time(3, 10),
            leader=AdvisoryLeader(ctx.database.engine, "control-plan.retention"),
        ),
        DailyJob(
            name="control-plan.baselines",
            run=baselines,
            timezone=settings.timezone,
            at=time(0, 20),
            catch_up_days=1,
            leader=AdvisoryLeader(ctx.database.engine, "control-plan.baselines"),
        ),
    ]
    if settings.control_plan_pass_enabled:
        runtime.jobs.append(
            PeriodicJob(
                name="control-plan.compliance",
                run=compliance_pass,
                every_s=settings.control_plan_pass_every_s,
                leader=AdvisoryLeader(ctx.database.engine, "control-plan.compliance"),
                initial_delay_s=min(30.0, settings.control_plan_pass_every_s),
            )
        )
    await relay.start()
    for job in runtime.jobs:
        await job.start()
    if settings.seeds_list:
        SEED_TASK.set(
            ctx, asyncio.create_task(_seed_when_ready(runtime), name="control-plan:seed-list")
        )


async def on_shutdown(ctx: ServiceContext) -> None:
    task = SEED_TASK.find(ctx)
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    runtime = RUNTIME.find(ctx)
    if runtime is None:
        return
    for job in runtime.jobs:
        await job.stop()
    await runtime.relay.stop()


SERVICE = build_service()
