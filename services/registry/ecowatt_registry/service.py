"""The registry service definition: what `create_app` builds and standalone mode mounts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from ecowatt_kernel.app import ServiceContext, ServiceSpec, StateKey

from ecowatt_registry.archive import republish_all
from ecowatt_registry.bulk.views import router as bulk
from ecowatt_registry.control_groups.views import router as control_groups
from ecowatt_registry.devices.views import router as devices
from ecowatt_registry.enterprises.views import router as enterprises
from ecowatt_registry.events.relay import RELAY, make_relay, wake_relay
from ecowatt_registry.excel.views import router as excel
from ecowatt_registry.facilities.views import router as facilities
from ecowatt_registry.history.views import router as history
from ecowatt_registry.points.views import router as points
from ecowatt_registry.production_lines.views import router as production_lines
from ecowatt_registry.reference.views import router as reference
from ecowatt_registry.settings import RegistrySettings
from ecowatt_registry.synthetic.generator import CityOptions
from ecowatt_registry.synthetic.service import archive_is_empty, seed_city
from ecowatt_registry.synthetic.views import router as admin

_logger = logging.getLogger(__name__)
SEED_TASK: StateKey[asyncio.Task[None]] = StateKey("seed_task", asyncio.Task)


async def _seed_if_empty(context: ServiceContext, options: CityOptions) -> None:
    async with context.database.transaction() as session:
        if not await archive_is_empty(session):
            return
        summary = await seed_city(session, options)
    wake_relay(context)
    _logger.info(
        "synthetic city seeded: %d enterprises, %d points (seed %d)",
        summary["counts"]["enterprise"],
        summary["counts"]["point"],
        options.seed,
    )


async def on_startup(context: ServiceContext) -> None:
    """Start the outbox relay; re-publish and seed the synthetic city when configured."""
    settings = context.settings
    assert isinstance(settings, RegistrySettings)
    relay = make_relay(context, poll_interval_s=settings.registry_outbox_poll_s)
    if settings.republishes_on_start:
        async with context.database.transaction() as session:
            count = await republish_all(session, actor="system:start-up")
        _logger.info("re-publishing %d snapshots (in-process bus starts empty)", count)
    await relay.start()
    if settings.seeds_city:
        # In the background, so that the service answers while the city is written.
        options = CityOptions(
            enterprises=settings.registry_seed_enterprises,
            seed=settings.registry_seed,
            defect_share=settings.registry_seed_defect_share,
        )
        SEED_TASK.set(
            context,
            asyncio.create_task(_seed_if_empty(context, options), name="registry:seed-city"),
        )


async def on_shutdown(context: ServiceContext) -> None:
    """Stop seeding (its transaction rolls back) and the relay (after its batch in hand)."""
    task = SEED_TASK.find(context)
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    relay = RELAY.find(context)
    if relay is not None:
        await relay.stop()


SERVICE = ServiceSpec(
    name="registry",
    title="EcoWatt registry (一企一档)",
    description=(
        "Owns the enterprise archive: enterprises, production lines, production and "
        "control facilities, control groups (产治关系), monitoring points, devices and "
        "thresholds, with the history of every change. Publishes every change as a full "
        "snapshot on `registry.changes` through a transactional outbox."
    ),
    settings_class=RegistrySettings,
    schema="registry",
    migrations=Path(__file__).parent / "migrations",
    on_startup=on_startup,
    on_shutdown=on_shutdown,
    routers=[
        bulk,  # before enterprises: /enterprises/bulk is not an enterprise id
        enterprises,
        production_lines,
        facilities,
        devices,
        points,
        control_groups,
        history,
        excel,
        reference,
        admin,
    ],
)
