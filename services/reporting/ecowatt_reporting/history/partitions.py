"""Time partitions of the history tables: created ahead of the data, dropped whole.

A partitioned table here is ranged on one timestamptz column, in UTC days or months; a
partition is named `<table>_pYYYYMMDD` (days) or `<table>_pYYYYMM` (months) and covers
[start, next start). Partitions are created ahead by the maintenance job and on demand for a
batch that needs one; retention drops a partition only when all of it is older than the
horizon, never single rows, so a drop is cheap and never leaves half a day behind.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ecowatt_reporting.database import SCHEMA

__all__ = [
    "POINT_SAMPLE_PARTS",
    "ROLLUP_15M_PARTS",
    "Partition",
    "PartitionedTable",
]

Unit = Literal["day", "month"]


@dataclass(frozen=True)
class Partition:
    """One partition: its name, range and size on disk."""

    table: str
    name: str
    start: datetime
    end: datetime
    rows_estimate: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class PartitionedTable:
    """A parent table ranged by days or months of UTC time."""

    parent: str
    unit: Unit

    def start_of(self, moment: datetime) -> datetime:
        """The start of the partition holding `moment`."""
        moment = moment.astimezone(UTC)
        if self.unit == "day":
            return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
        return datetime(moment.year, moment.month, 1, tzinfo=UTC)

    def next_start(self, start: datetime) -> datetime:
        if self.unit == "day":
            return start + timedelta(days=1)
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return datetime(year, month, 1, tzinfo=UTC)

    def name_of(self, start: datetime) -> str:
        suffix = start.strftime("%Y%m%d" if self.unit == "day" else "%Y%m")
        return f"{self.parent}_p{suffix}"

    def parse(self, name: str) -> datetime | None:
        """The start of the partition called `name`, or None when it is not one of ours."""
        match = re.fullmatch(re.escape(self.parent) + r"_p(\d{6}|\d{8})", name)
        if match is None:
            return None
        digits = match.group(1)
        if self.unit == "day" and len(digits) == 8:
            return datetime.strptime(digits, "%Y%m%d").replace(tzinfo=UTC)
        if self.unit == "month" and len(digits) == 6:
            return datetime.strptime(digits + "01", "%Y%m%d").replace(tzinfo=UTC)
        return None

    def starts_between(self, first: datetime, last: datetime) -> list[datetime]:
        """Starts of every partition touching [first, last]."""
        out, start = [], self.start_of(first)
        while start <= last:
            out.append(start)
            start = self.next_start(start)
        return out

    async def existing(self, connection: AsyncConnection) -> list[Partition]:
        """The partitions that exist now, oldest first, with their sizes."""
        rows = await connection.execute(
            text(
                "SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid) "
                "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent "
                "JOIN pg_namespace n ON n.oid = p.relnamespace "
                "WHERE n.nspname = :schema AND p.relname = :parent"
            ),
            {"schema": SCHEMA, "parent": self.parent},
        )
        out = []
        for name, tuples, size in rows:
            start = self.parse(name)
            if start is not None:
                out.append(
                    Partition(
                        self.parent,
                        name,
                        start,
                        self.next_start(start),
                        max(int(tuples), 0),
                        int(size),
                    )
                )
        return sorted(out, key=lambda p: p.start)

    async def ensure(self, connection: AsyncConnection, starts: set[datetime]) -> list[str]:
        """Create the partitions starting at `starts` that do not exist; their names.

        Runs in the caller's transaction under a transaction-level advisory lock, so that
        concurrent writers creating the same partition wait for each other instead of racing.
        """
        if not starts:
            return []
        await connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._lock_key})
        have = {p.start for p in await self.existing(connection)}
        created = []
        for start in sorted(starts - have):
            name = self.name_of(start)
            await connection.execute(
                text(
                    f'CREATE TABLE IF NOT EXISTS "{SCHEMA}"."{name}" PARTITION OF '
                    f'"{SCHEMA}"."{self.parent}" FOR VALUES FROM '
                    f"('{start.isoformat()}') TO ('{self.next_start(start).isoformat()}')"
                )
            )
            created.append(name)
        return created

    async def drop_before(self, connection: AsyncConnection, horizon: datetime) -> list[str]:
        """Drop every partition that ends at or before `horizon`; their names."""
        await connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._lock_key})
        dropped = []
        for partition in await self.existing(connection):
            if partition.end <= horizon:
                await connection.execute(text(f'DROP TABLE "{SCHEMA}"."{partition.name}"'))
                dropped.append(partition.name)
        return dropped

    @property
    def _lock_key(self) -> int:
        digest = hashlib.sha256(f"partitions:{SCHEMA}.{self.parent}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


POINT_SAMPLE_PARTS = PartitionedTable("point_sample", "day")
ROLLUP_15M_PARTS = PartitionedTable("rollup_15m", "month")


def day_start(day: date) -> datetime:
    """00:00 UTC of `day`."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
