"""The reporting service definition: what `create_app` builds and standalone mode mounts.

`on_startup` builds a `Runtime` (`runtime.RUNTIME` in the service context; request handlers
get it through the `CurrentRuntime` dependency):

- the registry view, and the archive copy it keeps current (`archive.service`);
- the history writer subscribed to `telemetry.points` (group `<prefix>.history`);
- the event recorder subscribed to `facility.states`, `alarms`, `quality.findings` and
  `control.compliance` (group `<prefix>.events`);
- jobs, each on one replica at a time (advisory lock): archive flush (1 s), partition
  maintenance and retention (hourly), the report schedule (day close) and today's
  provisional report.

The report jobs start once the archive copy is synchronised (and, in development, the demo
history written), so the first reports never miss the archive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from ecowatt_kernel.app import ServiceContext, ServiceSpec
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.scheduler import AdvisoryLeader, DailyJob, PeriodicJob

from ecowatt_reporting.archive.service import ArchiveSync
from ecowatt_reporting.datasets.views import router as datasets
from ecowatt_reporting.events.service import EventRecorder
from ecowatt_reporting.history.demo import (
    backfill_demo_history,
    demo_history_used,
    wait_for_archive,
)
from ecowatt_reporting.history.service import HistoryWriter, Maintenance
from ecowatt_reporting.history.views import router as history
from ecowatt_reporting.reports.service import Reports
from ecowatt_reporting.reports.views import router as reports
from ecowatt_reporting.runtime import RUNTIME, Runtime
from ecowatt_reporting.settings import ReportingSettings
from ecowatt_reporting.statistics.views import router as statistics

__all__ = ["SERVICE", "Runtime", "build_runtime"]

_logger = logging.getLogger(__name__)


def build_runtime(ctx: ServiceContext, settings: ReportingSettings) -> Runtime:
    """Wire the service's pieces (not started)."""
    database = ctx.database
    view = RegistryView(topic=settings.reporting_registry_topic)
    holder: list[Runtime] = []
    runtime = Runtime(
        settings=settings,
        database=database,
        view=view,
        archive=ArchiveSync(database=database, view=view),
        writer=HistoryWriter(
            database=database,
            timezone=settings.timezone,
            raw_retention_days=settings.reporting_raw_retention_days,
            future_tolerance_h=settings.reporting_future_tolerance_h,
        ),
        recorder=EventRecorder(database=database),
        maintenance=Maintenance(
            database=database,
            raw_retention_days=settings.reporting_raw_retention_days,
            rollup_retention_days=settings.reporting_rollup_retention_days,
            ahead_days=settings.reporting_partitions_ahead_days,
        ),
        reports=Reports(
            database=database,
            settings=settings,
            demo_note=lambda: bool(holder and holder[0].demo_history),
        ),
    )
    holder.append(runtime)
    return runtime


async def _start(runtime: Runtime, job: Any) -> None:
    await job.start()
    runtime.jobs.append(job)


async def _prepare_and_schedule(runtime: Runtime) -> None:
    """Archive copy, today's report, demo history, then the daily schedule (background)."""
    settings = runtime.settings
    engine = runtime.database.engine
    await runtime.archive.sync_all()
    if settings.demo_history_days:
        points = await wait_for_archive(runtime.view)
        await runtime.archive.flush()
        _logger.info("demo history: archive holds %d points", points)
    if settings.reporting_schedule_enabled and settings.reporting_today_every_min > 0:
        await _start(
            runtime,
            PeriodicJob(
                name="reporting.today",
                run=runtime.reports.refresh_today,
                every_s=settings.reporting_today_every_min * 60.0,
                leader=AdvisoryLeader(engine, "reporting.today"),
            ),
        )
    if settings.demo_history_days:
        # Let the platform's first minute (devices connecting) pass before the demo days
        # are written; the writing itself yields between small batches.
        await asyncio.sleep(settings.reporting_demo_delay_s)
        written = await backfill_demo_history(
            database=runtime.database,
            view=runtime.view,
            writer=runtime.writer,
            days=settings.demo_history_days,
            timezone=settings.timezone,
        )
        if written:
            _logger.info("demo history: %d readings synthesised (development only)", written)
    runtime.demo_history = await demo_history_used(runtime.database)
    if settings.reporting_schedule_enabled:
        await _start(
            runtime,
            DailyJob(
                name="reporting.schedule",
                run=runtime.reports.close_day,
                timezone=settings.timezone,
                at=settings.reporting_daily_at,
                last_done=runtime.reports.last_scheduled_day,
                catch_up_days=settings.reporting_catch_up_days,
                leader=AdvisoryLeader(engine, "reporting.schedule"),
            ),
        )


async def on_startup(ctx: ServiceContext) -> None:
    settings = ctx.settings
    assert isinstance(settings, ReportingSettings)
    runtime = build_runtime(ctx, settings)
    RUNTIME.set(ctx, runtime)
    await runtime.maintenance.run()
    interrupted = await runtime.reports.recover()
    if interrupted:
        _logger.warning("%d reports were interrupted by a restart (marked failed)", interrupted)
    prefix = settings.reporting_consumer_prefix
    await runtime.view.attach(ctx.bus, group_prefix=prefix)
    ctx.subscriptions.append(
        await ctx.bus.subscribe(
            group=f"{prefix}.history",
            topics=[settings.reporting_points_topic],
            handler=runtime.writer.handle,
            max_batch=settings.reporting_history_max_batch,
            concurrent_partitions=settings.reporting_history_concurrent_partitions,
        )
    )
    ctx.subscriptions.append(
        await ctx.bus.subscribe(
            group=f"{prefix}.events",
            topics=[
                settings.reporting_states_topic,
                settings.reporting_alarms_topic,
                settings.reporting_findings_topic,
                settings.reporting_compliance_topic,
            ],
            handler=runtime.recorder.handle,
            max_batch=5000,
        )
    )
    engine = runtime.database.engine
    runtime.jobs = [
        PeriodicJob(name="reporting.archive", run=runtime.archive.flush, every_s=1.0),
        PeriodicJob(
            name="reporting.partitions",
            run=runtime.maintenance.run,
            every_s=settings.reporting_maintenance_every_s,
            leader=AdvisoryLeader(engine, "reporting.partitions"),
            initial_delay_s=settings.reporting_maintenance_every_s,
        ),
    ]
    for job in runtime.jobs:
        await job.start()
    runtime.tasks.append(
        asyncio.create_task(_prepare_and_schedule(runtime), name="reporting.prepare")
    )


async def on_shutdown(ctx: ServiceContext) -> None:
    runtime = RUNTIME.find(ctx)
    if runtime is None:
        return
    for task in runtime.tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for job in runtime.jobs:
        await job.stop()
    await runtime.reports.stop()
    if runtime.view.subscription is not None and runtime.view.subscription.running:
        await runtime.view.subscription.stop()


SERVICE = ServiceSpec(
    name="reporting",
    title="EcoWatt reporting (统计报表)",
    description=(
        "Owns telemetry history (raw samples in daily partitions, 15-minute/hourly/daily "
        "rollups), facility states and alarms as intervals, statistics, the daily, weekly "
        "and monthly reports (Excel and PDF) with subscriptions, and the read-only partner "
        "datasets."
    ),
    settings_class=ReportingSettings,
    schema="reporting",
    migrations=Path(__file__).parent / "migrations",
    routers=[history, statistics, reports, datasets],
    on_startup=on_startup,
    on_shutdown=on_shutdown,
)
