"""The registry's outbox relay, and committing a request's changes so they get published."""

from __future__ import annotations

from ecowatt_kernel.app import ServiceContext, StateKey, service_context
from ecowatt_kernel.outbox import OutboxRelay
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_registry.database import OUTBOX

RELAY = StateKey("outbox_relay", OutboxRelay)


def make_relay(context: ServiceContext, *, poll_interval_s: float = 1.0) -> OutboxRelay:
    """The relay publishing the registry's outbox on the service's bus."""
    relay = OutboxRelay(
        engine=context.database.engine,
        bus=context.bus,
        table=OUTBOX,
        poll_interval_s=poll_interval_s,
    )
    RELAY.set(context, relay)
    return relay


def wake_relay(context: ServiceContext) -> None:
    relay = RELAY.find(context)
    if relay is not None:
        relay.wake()


async def commit(request: Request, session: AsyncSession) -> None:
    """Commit the request's transaction, then have the relay publish at once."""
    await session.commit()
    wake_relay(service_context(request))
