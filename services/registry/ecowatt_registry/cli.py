"""Shared set-up of the registry's command-line tools: settings, database, optional relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ecowatt_kernel.bus import make_bus
from ecowatt_kernel.db import Database
from ecowatt_kernel.outbox import OutboxRelay

from ecowatt_registry.database import OUTBOX
from ecowatt_registry.settings import RegistrySettings

MIGRATIONS = Path(__file__).parent / "migrations"


@asynccontextmanager
async def database(settings: RegistrySettings) -> AsyncIterator[Database]:
    """The registry's database, migrated."""
    db = Database(settings.database_url.get_secret_value(), schema="registry", pool_size=2)
    try:
        await db.migrate(MIGRATIONS)
        yield db
    finally:
        await db.dispose()


async def drain_outbox(settings: RegistrySettings, db: Database) -> int:
    """Publish the outbox on the configured bus (Kafka) until it is empty."""
    bus = make_bus(settings)
    await bus.start()
    try:
        return await OutboxRelay(engine=db.engine, bus=bus, table=OUTBOX).drain()
    finally:
        await bus.stop()
