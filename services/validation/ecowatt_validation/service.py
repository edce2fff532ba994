"""The validation service definition: what `create_app` builds and standalone mode mounts.

`on_startup` builds the pieces and keeps them in a `Runtime` (`runtime.RUNTIME`; request
handlers take the `CurrentRuntime` dependency):
the registry view, the rule book, the finding store, the binder subscribed to
`telemetry.readings`, the outbox relay publishing `quality.findings`, and three jobs — the
day close (previous local day at `day_close_at`), the live offline sweep, and the archive
check that follows registry changes. Jobs run on one replica at a time (advisory lock).

With `ECOWATT_VALIDATION_WORKERS` > 1 (Kafka bus only) this process is worker 0 and starts
workers 1…N−1 (`python -m ecowatt_validation.worker`). Every worker is a member of
`validation.bind` (they divide the partitions of `telemetry.readings`; a worker drops the
cached state of the devices whose partitions it gives up) and runs an outbox relay (one
publishes at a time: advisory lock); only worker 0 serves the API and runs the three jobs,
the others reload the rule book every `sweep_interval_s`. README "Several workers".
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ecowatt_kernel.app import ServiceContext, ServiceSpec
from ecowatt_kernel.outbox import OutboxRelay
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.scheduler import AdvisoryLeader, DailyJob, PeriodicJob
from ecowatt_kernel.workers import start_workers, stop_workers

from ecowatt_validation.api import router
from ecowatt_validation.binding import Binder
from ecowatt_validation.checks import Checks, enterprise_info
from ecowatt_validation.findings import FindingStore
from ecowatt_validation.models import OUTBOX
from ecowatt_validation.rulebook import RuleBook
from ecowatt_validation.runtime import RUNTIME, Runtime
from ecowatt_validation.settings import ValidationSettings

CLOCK_KEY = "clock"


GC_THRESHOLDS = (50_000, 100, 10)


async def freeze_archive(view: RegistryView) -> None:
    """Tune the cyclic garbage collector for the binder, once the registry view holds the
    archive: take every object alive then out of its generations (`gc.freeze`: the archive
    lives as long as the process) and collect the youngest generation every 50,000
    allocations instead of 700 (`GC_THRESHOLDS`). A batch of 6,000 readings allocates about
    400,000 objects that live until the batch is written; with the defaults they were scanned
    again and again and pushed into full collections of the whole heap (a third of the
    binder's time for a 10,000-device city). Objects without reference cycles are still
    freed when their last reference goes; cycles are found a little later than before."""
    while True:
        with contextlib.suppress(TimeoutError):
            await view.wait_ready(timeout_s=600)
            break
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def build_runtime(ctx: ServiceContext, settings: ValidationSettings) -> Runtime:
    """Wire the service's pieces (not started)."""
    clock: Callable[[], datetime] = ctx.state.get(CLOCK_KEY) or _wall_clock
    database = ctx.database
    view = RegistryView(topic=settings.registry_topic)
    rulebook = RuleBook()
    findings = FindingStore(
        rules=rulebook, enterprise=enterprise_info(view), topic=settings.findings_topic
    )
    relay = OutboxRelay(engine=database.engine, bus=ctx.bus, table=OUTBOX)
    binder = Binder(
        database=database,
        bus=ctx.bus,
        view=view,
        findings=findings,
        rules=rulebook,
        timezone=settings.timezone,
        valid_flags=settings.valid_flag_set,
        sample_cns=settings.sample_cn_set,
        points_topic=settings.points_topic,
        publish_points=settings.publish_points,
        on_committed=relay.wake,
        clock=clock,
    )
    checks = Checks(
        database=database,
        view=view,
        findings=findings,
        rules=rulebook,
        timezone=settings.timezone,
        on_committed=relay.wake,
        clock=clock,
        settle_s=settings.archive_settle_s,
    )
    return Runtime(settings, database, view, rulebook, findings, binder, checks, relay, [])


async def on_startup(ctx: ServiceContext) -> None:
    settings = ctx.settings
    assert isinstance(settings, ValidationSettings)
    runtime = build_runtime(ctx, settings)
    RUNTIME.set(ctx, runtime)
    async with runtime.database.transaction() as session:
        await runtime.rulebook.load(session)
    prefix = settings.validation_consumer_prefix
    await runtime.view.attach(ctx.bus, group_prefix=prefix)
    runtime.tasks.append(asyncio.create_task(freeze_archive(runtime.view), name="validation.gc"))
    ctx.subscriptions.append(
        await ctx.bus.subscribe(
            group=f"{prefix}.bind",
            topics=[settings.readings_topic],
            handler=runtime.binder.handle,
            max_batch=settings.bind_max_batch,
            concurrent_partitions=settings.bind_concurrent_partitions,
            on_revoked=runtime.binder.store.partitions_revoked,
        )
    )
    await runtime.relay.start()
    if settings.worker > 0:
        await start_worker_jobs(runtime, settings)
        return
    engine = runtime.database.engine

    async def archive() -> None:
        await runtime.view.wait_ready()
        await runtime.checks.check_archive()

    async def sweep() -> None:
        await runtime.view.wait_ready()
        async with runtime.database.transaction() as session:
            await runtime.rulebook.load(session)  # parameters edited on another replica
        await runtime.checks.sweep_offline()

    archive_job = PeriodicJob(
        name="validation.archive",
        run=archive,
        every_s=3600.0,
        leader=AdvisoryLeader(engine, "validation.archive"),
        initial_delay_s=settings.archive_debounce_s,
    )
    loop = asyncio.get_running_loop()
    later: list[asyncio.TimerHandle] = []

    def archive_changed(*_: object) -> None:
        # Now (other archives may have settled) and once this change has settled.
        archive_job.wake()
        if settings.archive_settle_s > 0:
            for handle in later:
                handle.cancel()
            later[:] = [loop.call_later(settings.archive_settle_s + 1.0, archive_job.wake)]

    runtime.view.on_change(archive_changed)
    runtime.jobs = [
        archive_job,
        PeriodicJob(
            name="validation.sweep",
            run=sweep,
            every_s=settings.sweep_interval_s,
            leader=AdvisoryLeader(engine, "validation.sweep"),
            initial_delay_s=settings.sweep_interval_s,
        ),
        DailyJob(
            name="validation.day-close",
            run=lambda day: runtime.run_day(day, "schedule"),
            timezone=settings.timezone,
            at=settings.day_close_at,
            last_done=runtime.checks.last_completed_day,
            catch_up_days=settings.day_close_catch_up_days,
            leader=AdvisoryLeader(engine, "validation.day-close"),
            clock=runtime.checks.clock,
        ),
    ]
    for job in runtime.jobs:
        await job.start()
    if settings.validation_worker_index is None:
        await start_workers(
            ctx,
            module="ecowatt_validation.worker",
            count=settings.workers,
            index_variable="ECOWATT_VALIDATION_WORKER_INDEX",
        )


async def start_worker_jobs(runtime: Runtime, settings: ValidationSettings) -> None:
    """Workers 1…N−1 bind only: the once-per-city jobs and the API are worker 0's. They
    reload the rule book as the sweep does on worker 0 (parameters edited through the API)."""

    async def rules() -> None:
        async with runtime.database.transaction() as session:
            await runtime.rulebook.load(session)

    runtime.jobs = [
        PeriodicJob(
            name="validation.rules",
            run=rules,
            every_s=settings.sweep_interval_s,
            initial_delay_s=settings.sweep_interval_s,
        )
    ]
    for job in runtime.jobs:
        await job.start()


async def on_shutdown(ctx: ServiceContext) -> None:
    await stop_workers(ctx)
    runtime = RUNTIME.find(ctx)
    if runtime is None:
        return
    for job in runtime.jobs:
        await job.stop()
    for task in runtime.tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if runtime.view.subscription is not None and runtime.view.subscription.running:
        await runtime.view.subscription.stop()
    await runtime.relay.stop()


def build_service(*, clock: Callable[[], datetime] | None = None) -> ServiceSpec:
    """The service spec; tests and replays pass a clock (settle times, day close, sweep)."""

    async def startup(ctx: ServiceContext) -> None:
        if clock is not None:
            ctx.state[CLOCK_KEY] = clock
        await on_startup(ctx)

    return ServiceSpec(
        name="validation",
        title=SERVICE.title,
        description=SERVICE.description,
        settings_class=ValidationSettings,
        schema="validation",
        migrations=SERVICE.migrations,
        routers=[router],
        on_startup=startup,
        on_shutdown=on_shutdown,
    )


SERVICE = ServiceSpec(
    name="validation",
    title="EcoWatt validation (采集数据核查)",
    description=(
        "Binds readings to monitoring points (telemetry.points), checks the archive and the "
        "data (five completeness checks, ten data-quality checks, credit codes, offline and "
        "latency), keeps daily per-point aggregates and tracks findings (quality.findings)."
    ),
    settings_class=ValidationSettings,
    schema="validation",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    on_startup=on_startup,
    on_shutdown=on_shutdown,
)
