"""Timelines: the append-only journal of an incident or a request (one table each)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Table, Text, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_ops.desk.access import Actor
from ecowatt_ops.desk.database import metadata

__all__ = ["TimelineEntry", "append", "entries", "timeline_table"]


def timeline_table(name: str, owner_column: str, owner: str) -> Table:
    """The timeline table `name` of the cases in table `owner` (made append-only by the
    migration)."""
    return Table(
        name,
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column(owner_column, Text, ForeignKey(f"{owner}.id"), nullable=False, index=True),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("kind", Text, nullable=False),
        Column("actor", Text, nullable=False),
        Column("actor_name", Text),
        Column("text", Text, nullable=False, server_default=""),
        Column("details", JSONB, nullable=False, server_default=text("'{}'")),
    )


class TimelineEntry(BaseModel):
    at: datetime
    kind: str
    kind_name: str
    actor: str
    actor_name: str | None
    text: str
    details: dict[str, Any]


def _owner(table: Table) -> str:
    return "incident_id" if "incident_id" in table.c else "request_id"


async def append(
    session: AsyncSession,
    table: Table,
    owner_id: str,
    *,
    kind: str,
    actor: Actor,
    at: datetime,
    text: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry to the timeline `table` of `owner_id`."""
    await session.execute(
        table.insert().values(
            {
                _owner(table): owner_id,
                "at": at,
                "kind": kind,
                "actor": actor.subject,
                "actor_name": actor.name,
                "text": text,
                "details": details or {},
            }
        )
    )


async def entries(
    session: AsyncSession, table: Table, owner_id: str, names: Mapping[str, str]
) -> list[TimelineEntry]:
    """The timeline of `owner_id`, oldest first, each kind with its Chinese name."""
    rows = (
        await session.execute(
            select(table).where(table.c[_owner(table)] == owner_id).order_by(table.c.at, table.c.id)
        )
    ).mappings()
    return [
        TimelineEntry(
            at=r["at"],
            kind=r["kind"],
            kind_name=names.get(r["kind"], r["kind"]),
            actor=r["actor"],
            actor_name=r["actor_name"],
            text=r["text"],
            details=r["details"],
        )
        for r in rows
    ]
