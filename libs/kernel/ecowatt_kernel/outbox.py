"""The transactional outbox: publish what a transaction committed, at least once.

A service that must tell the bus about a change writes the bus message into an `outbox`
table of its own schema *in the same transaction* as the change (`enqueue`). A rolled-back
change therefore publishes nothing, and a committed one is never lost. An `OutboxRelay`
running in the service reads unpublished rows in id order, publishes them and marks them
published; a crash between publishing and marking re-publishes those rows (at least once).

    OUTBOX = outbox_table(metadata)                       # in the service's models
    create_outbox_table(op.get_bind(), schema="registry") # in an Alembic migration

    async with database.transaction() as session:
        ...                                               # the change
        await enqueue(session, OUTBOX, [encode(event)])
    relay.wake()                                          # publish now rather than at the next poll

Only one relay publishes a given outbox at a time (a transaction-level advisory lock), so
rows leave in the order they were written even with several replicas running.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    Table,
    Text,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from ecowatt_kernel.bus.base import Bus
from ecowatt_kernel.bus.types import Message
from ecowatt_kernel.metrics import OUTBOX_PUBLISHED

__all__ = [
    "OutboxRelay",
    "create_outbox_table",
    "enqueue",
    "outbox_table",
    "pending_count",
]

_logger = logging.getLogger(__name__)
_BACKOFF_MAX_S = 5.0


def outbox_table(metadata: MetaData, *, name: str = "outbox") -> Table:
    """The outbox table in `metadata`'s schema (the owning service's)."""
    return Table(
        name,
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("topic", Text, nullable=False),
        Column("key", LargeBinary, nullable=True),
        Column("value", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
        # The relay's query: the oldest unpublished rows.
        Index(f"ix_{name}_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    )


def create_outbox_table(connection: Connection, *, schema: str, name: str = "outbox") -> None:
    """Create the outbox table and its index (for Alembic: `op.get_bind()`)."""
    outbox_table(MetaData(schema=schema), name=name).create(connection)


def _encode_headers(message: Message) -> list[list[str]]:
    return [[key, base64.b64encode(value).decode()] for key, value in message.headers]


def _decode_headers(stored: Any) -> tuple[tuple[str, bytes], ...]:
    return tuple((str(key), base64.b64decode(value)) for key, value in stored or ())


async def enqueue(
    session: AsyncSession | AsyncConnection, table: Table, messages: Sequence[Message]
) -> None:
    """Write `messages` into `table` inside the caller's transaction."""
    if not messages:
        return
    rows = [
        {
            "topic": m.topic,
            "key": m.key,
            "value": m.value,
            "headers": _encode_headers(m),
        }
        for m in messages
    ]
    await session.execute(table.insert(), rows)


async def pending_count(engine: AsyncEngine, table: Table) -> int:
    """How many rows wait to be published."""
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(table).where(table.c.published_at.is_(None))
        )
    return int(count or 0)


class OutboxRelay:
    """Publishes an outbox's rows in id order and marks them published."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        bus: Bus,
        table: Table,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        keep_published: timedelta = timedelta(days=1),
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.table = table
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.keep_published = keep_published
        self._qualified = f"{table.schema}.{table.name}" if table.schema else table.name
        self._lock_key = int.from_bytes(
            hashlib.sha256(f"outbox:{self._qualified}".encode()).digest()[:8], "big", signed=True
        )
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """Publish now instead of at the next poll (call after committing new rows)."""
        self._wake.set()

    async def start(self) -> None:
        """Run the relay loop in the background."""
        if self.running:
            return
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"outbox:{self.table.name}")

    async def stop(self) -> None:
        """Finish the batch in hand, then stop."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish_batch(self) -> int:
        """Publish up to `batch_size` pending rows; the number published (0: none or locked)."""
        t = self.table
        async with self.engine.begin() as connection:
            locked = await connection.scalar(select(func.pg_try_advisory_xact_lock(self._lock_key)))
            if not locked:
                return 0  # another relay is publishing this outbox
            rows = (
                await connection.execute(
                    select(t.c.id, t.c.topic, t.c.key, t.c.value, t.c.headers)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.id)
                    .limit(self.batch_size)
                )
            ).all()
            if not rows:
                return 0
            await self.bus.publish(
                [
                    Message(
                        topic=row.topic,
                        key=row.key,
                        value=row.value,
                        headers=_decode_headers(row.headers),
                    )
                    for row in rows
                ]
            )
            # A crash here leaves the rows unpublished: they go out again (at least once).
            await connection.execute(
                update(t)
                .where(t.c.id.in_([row.id for row in rows]))
                .values(published_at=func.now())
            )
        self.published += len(rows)
        OUTBOX_PUBLISHED.labels(self._qualified).inc(len(rows))
        return len(rows)

    async def drain(self) -> int:
        """Publish until nothing is pending; the number published."""
        total = 0
        while count := await self.publish_batch():
            total += count
        return total

    async def purge(self) -> int:
        """Delete rows published longer than `keep_published` ago."""
        t = self.table
        async with self.engine.begin() as connection:
            result = await connection.execute(
                delete(t).where(
                    t.c.published_at.is_not(None),
                    t.c.published_at < func.now() - self.keep_published,
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def _run(self) -> None:
        backoff = self.poll_interval_s
        cycles = 0
        while not self._stopping.is_set():
            if not self.bus.started:
                # A process may start its relay before its bus (standalone mode): wait quietly.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), min(self.poll_interval_s, 0.2))
                continue
            try:
                while not self._stopping.is_set() and await self.publish_batch():
                    pass
                cycles += 1
                if cycles % 600 == 1:
                    await self.purge()
                backoff = self.poll_interval_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bus or the database is down: retry, never give up
                _logger.warning("outbox %s: publishing failed, retrying: %s", self.table.name, exc)
                backoff = min(max(backoff * 2, 0.05), _BACKOFF_MAX_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            self._wake.clear()
