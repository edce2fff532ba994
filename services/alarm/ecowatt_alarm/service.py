"""The alarm service definition: what `create_app` builds and standalone mode mounts.

`on_startup` builds the registry view, the processor (engine, outbox relay, timers, nightly
learning) and the notifier, and subscribes the consumers:

| group | topic | handler |
|---|---|---|
| `alarm.points` | `telemetry.points` | states and rules (`AlarmProcessor.handle_points`) |
| `alarm.tasks` | `control.tasks` | stop orders → suppression |
| `alarm.findings` | `quality.findings` | data-quality findings → evidence |
| `alarm.notify` | `alarms` | notifications (`Notifier.handle`) |
| `alarm.registry-view.<random>` | `registry.changes` | the live archive |

With `ECOWATT_ALARM_WORKERS` > 1 (Kafka bus only) this process is worker 0 and starts workers
1…N−1 (`python -m ecowatt_alarm.worker`): every worker is a member of `alarm.points` and
`alarm.notify` (they divide the partitions), reads all of `control.tasks` and
`quality.findings` in a group of its own (`alarm.tasks.w<k>`, `alarm.findings.w<k>`: every
worker needs every stop order and finding in memory), and only worker 0 serves the API and
runs the nightly learning. README "Several workers".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ecowatt_kernel.app import ServiceContext, ServiceSpec
from ecowatt_kernel.bus import BatchHandler, RebalanceHook
from ecowatt_kernel.contracts import TOPICS, TopicSpec
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.workers import start_workers, stop_workers

from ecowatt_alarm.api import router
from ecowatt_alarm.dependencies import NOTIFIER, PROCESSOR, VIEW
from ecowatt_alarm.notifications.notifier import Notifier, SmsGateway
from ecowatt_alarm.processor import AlarmProcessor
from ecowatt_alarm.settings import AlarmSettings

__all__ = ["SERVICE", "build_service", "on_shutdown", "on_startup"]


def _spec(name: str, template: str) -> TopicSpec:
    base = TOPICS[template]
    return TopicSpec(
        name, base.key, base.description, base.partitions, base.compacted, base.retention_ms
    )


def build_service(
    *, clock: Callable[[], float] | None = None, sms: SmsGateway | None = None
) -> ServiceSpec:
    """The service spec; tests pass a clock (timers, quiet hours) and an SMS gateway."""

    async def startup(ctx: ServiceContext) -> None:
        if clock is not None:
            ctx.state["clock"] = clock
        if sms is not None:
            ctx.state["sms"] = sms
        await on_startup(ctx)

    return ServiceSpec(
        name="alarm",
        title="EcoWatt alarm",
        description=(
            "Owns point and facility states, production–control correlation alarms, the alarm "
            "handling journal, planned-outage filings and notifications."
        ),
        settings_class=AlarmSettings,
        routers=[router],
        schema="alarm",
        migrations=Path(__file__).parent / "migrations",
        on_startup=startup,
        on_shutdown=on_shutdown,
    )


async def on_startup(ctx: ServiceContext) -> None:
    settings = ctx.settings
    assert isinstance(settings, AlarmSettings)
    await ctx.bus.ensure_topics(
        [
            _spec(settings.alarm_points_topic, "telemetry.points"),
            _spec(settings.alarm_registry_topic, "registry.changes"),
            _spec(settings.alarm_tasks_topic, "control.tasks"),
            _spec(settings.alarm_findings_topic, "quality.findings"),
            _spec(settings.alarm_states_topic, "facility.states"),
            _spec(settings.alarm_alarms_topic, "alarms"),
        ]
    )
    view = RegistryView(topic=settings.alarm_registry_topic)
    sub = await view.attach(ctx.bus, group_prefix=settings.alarm_consumer_prefix)
    ctx.subscriptions.append(sub)
    processor = AlarmProcessor(
        database=ctx.database,
        bus=ctx.bus,
        settings=settings,
        view=view,
        clock=ctx.state.get("clock") or time.time,
    )
    notifier = Notifier(
        database=ctx.database,
        settings=settings,
        view=view,
        sms=ctx.state.get("sms"),
        clock=ctx.state.get("clock"),
    )
    VIEW.set(ctx, view)
    PROCESSOR.set(ctx, processor)
    NOTIFIER.set(ctx, notifier)
    await processor.load()
    prefix = settings.alarm_consumer_prefix
    # Every worker reads every stop order and finding (they are per enterprise, on topics
    # partitioned otherwise than telemetry.points): worker 0 in the group it always had.
    own = f".w{settings.worker}" if settings.worker else ""

    async def subscribe(
        name: str,
        topic: str,
        handler: BatchHandler,
        *,
        max_batch: int = 500,
        on_assigned: RebalanceHook | None = None,
        on_revoked: RebalanceHook | None = None,
    ) -> None:
        subscription = await ctx.bus.subscribe(
            group=f"{prefix}.{name}",
            topics=[topic],
            handler=handler,
            max_batch=max_batch,
            on_assigned=on_assigned,
            on_revoked=on_revoked,
        )
        ctx.subscriptions.append(subscription)

    await subscribe(
        "points",
        settings.alarm_points_topic,
        processor.handle_points,
        max_batch=2000,
        on_assigned=processor.partitions_assigned,
        on_revoked=processor.partitions_revoked,
    )
    await subscribe(f"tasks{own}", settings.alarm_tasks_topic, processor.handle_tasks)
    await subscribe(f"findings{own}", settings.alarm_findings_topic, processor.handle_findings)
    await subscribe("notify", settings.alarm_alarms_topic, notifier.handle)
    await processor.start()
    if settings.alarm_worker_index is None:
        await start_workers(
            ctx,
            module="ecowatt_alarm.worker",
            count=settings.workers,
            index_variable="ECOWATT_ALARM_WORKER_INDEX",
        )


async def on_shutdown(ctx: ServiceContext) -> None:
    await stop_workers(ctx)
    processor = PROCESSOR.find(ctx)
    if processor is not None:
        await processor.stop()


SERVICE = build_service()
