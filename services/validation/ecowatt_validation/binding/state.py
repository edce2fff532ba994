"""Per-point state and day aggregates, in memory and in `point_state` / `point_daily`.

`StateStore` keeps the cache of the points this consumer binds: `load` fetches what a batch
needs and is not cached; `flush` writes a batch's changes in one transaction (COPY into
staging tables, one merge per table, the state revision-checked), with the batch's unbound
counts and streaming findings, and commits only after the batch's `telemetry.points` are out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ecowatt_kernel.bus import Partitions, TransientError
from ecowatt_kernel.contracts.registry import PointSnapshot
from ecowatt_kernel.db import Database
from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_validation.findings import FindingStore, Hit

__all__ = ["HOURS", "DayAgg", "PointState", "StateConflict", "StateStore"]

HOURS = 24


class StateConflict(TransientError):
    """Another consumer changed a point's state since this one cached it."""


@dataclass
class DayAgg:
    point_id: str
    day: date
    enterprise_id: str
    mn: str
    interval_s: int
    energy_kwh: float = 0.0
    reported_kwh: float = 0.0
    deltas: int = 0
    p_max: float | None = None
    p_min: float | None = None
    p_sum: float = 0.0
    p_n: int = 0
    samples: int = 0
    valid_samples: int = 0
    slots: bytearray = field(default_factory=bytearray)
    valid_slots: bytearray = field(default_factory=bytearray)
    live_slots: bytearray = field(default_factory=bytearray)
    """Slots taken by live samples (not `history`): what the daily device-offline check
    reads — back-filled data complete the day but do not make the device reachable then."""
    hourly_kwh: list[float] = field(default_factory=lambda: [0.0] * HOURS)
    neg_energy_events: int = 0
    resets: int = 0
    rollovers: int = 0
    neg_power_samples: int = 0
    neg_power_run_max: int = 0
    const_max_h: float = 0.0
    latency_max_s: float = 0.0
    latency_grades: list[int] = field(default_factory=lambda: [0] * 5)
    first_time: datetime | None = None
    last_time: datetime | None = None
    dirty: bool = False

    def __post_init__(self) -> None:
        size = (86400 // max(self.interval_s, 1) + 8) // 8
        if len(self.slots) < size:
            self.slots.extend(bytes(size - len(self.slots)))
        if len(self.valid_slots) < size:
            self.valid_slots.extend(bytes(size - len(self.valid_slots)))
        if len(self.live_slots) < size:
            self.live_slots.extend(bytes(size - len(self.live_slots)))

    def slot_taken(self, slot: int) -> bool:
        return bool(self.slots[slot >> 3] & (1 << (slot & 7)))

    def take(self, slot: int, valid: bool, live: bool = True) -> None:
        self.slots[slot >> 3] |= 1 << (slot & 7)
        if valid:
            self.valid_slots[slot >> 3] |= 1 << (slot & 7)
        if live:
            self.live_slots[slot >> 3] |= 1 << (slot & 7)


@dataclass
class PointState:
    point_id: str
    enterprise_id: str
    mn: str
    counter_kwh: float | None = None
    counter_time: datetime | None = None
    last_time: datetime | None = None
    last_valid_time: datetime | None = None
    last_received_at: datetime | None = None
    neg_run: int = 0
    runs: dict[str, Any] = field(default_factory=dict)
    rev: int = 0
    days: dict[date, DayAgg] = field(default_factory=dict)
    dirty: bool = False


class StateStore:
    """The cached state of the points this consumer binds, and its storage."""

    def __init__(self, *, database: Database, findings: FindingStore) -> None:
        self.database = database
        self.findings = findings
        self.cache: dict[str, PointState] = {}
        self._staged: weakref.WeakSet[Any] = weakref.WeakSet()  # connections with staging tables

    def forget(self, point_ids: Iterable[str]) -> None:
        """Drop points from the cache (their batch failed: reload them from the database)."""
        for point_id in point_ids:
            self.cache.pop(point_id, None)

    async def partitions_revoked(self, partitions: Partitions) -> None:
        """`telemetry.readings` partitions given up to another worker (their last batch is
        committed): drop the points of the devices they carry; whoever binds them next reads
        their state afresh (and the revision check refuses a stale copy in any case)."""
        topics = list(partitions.counts)
        gone = [
            point_id
            for point_id, state in self.cache.items()
            if any(partitions.carries(topic, state.mn) for topic in topics)
        ]
        self.forget(gone)

    async def load(
        self, wanted_points: dict[str, PointSnapshot], wanted_days: set[tuple[str, date]]
    ) -> None:
        """Fetch (or create) the state and day rows of `wanted_*` that are not cached."""
        missing_points = [p for p in wanted_points if p not in self.cache]
        missing_days = [
            (p, d) for p, d in wanted_days if p not in self.cache or d not in self.cache[p].days
        ]
        if not missing_points and not missing_days:
            return
        async with self.database.session() as session:
            driver = await _driver(session)
            if missing_points:
                rows = await driver.fetch(
                    "SELECT * FROM validation.point_state WHERE point_id = ANY($1::text[])",
                    missing_points,
                )
                found = {r["point_id"]: r for r in rows}
                for point_id in missing_points:
                    snap = wanted_points[point_id]
                    row = found.get(point_id)
                    if row is None:
                        self.cache[point_id] = PointState(
                            point_id, snap.enterprise_id, snap.device_mn or ""
                        )
                    else:
                        runs = row["runs"]
                        self.cache[point_id] = PointState(
                            point_id,
                            snap.enterprise_id,
                            snap.device_mn or "",
                            counter_kwh=row["counter_kwh"],
                            counter_time=row["counter_time"],
                            last_time=row["last_time"],
                            last_valid_time=row["last_valid_time"],
                            last_received_at=row["last_received_at"],
                            neg_run=row["neg_run"],
                            runs=runs if isinstance(runs, dict) else _json_loads(runs),
                            rev=row["rev"],
                        )
            if missing_days:
                rows = await driver.fetch(
                    "SELECT d.* FROM validation.point_daily d JOIN unnest($1::text[], $2::date[]) AS k(p, d)"  # noqa: E501
                    " ON d.point_id = k.p AND d.day = k.d",
                    [p for p, _ in missing_days],
                    [d for _, d in missing_days],
                )
                found_days = {(r["point_id"], r["day"]): r for r in rows}
                for point_id, day in missing_days:
                    snap = wanted_points[point_id]
                    state = self.cache[point_id]
                    row = found_days.get((point_id, day))
                    interval = max(int(snap.expected_interval_s), 1)
                    if row is None:
                        state.days[day] = DayAgg(
                            point_id, day, snap.enterprise_id, snap.device_mn or "", interval
                        )
                    else:
                        state.days[day] = DayAgg(
                            point_id,
                            day,
                            row["enterprise_id"],
                            row["mn"],
                            row["interval_s"],
                            energy_kwh=row["energy_kwh"],
                            reported_kwh=row["reported_kwh"],
                            deltas=row["deltas"],
                            p_max=row["p_max"],
                            p_min=row["p_min"],
                            p_sum=row["p_sum"],
                            p_n=row["p_n"],
                            samples=row["samples"],
                            valid_samples=row["valid_samples"],
                            slots=bytearray(row["slots"]),
                            valid_slots=bytearray(row["valid_slots"]),
                            # rows written before live slots were kept: all taken live
                            live_slots=bytearray(
                                row["slots"] if row["live_slots"] is None else row["live_slots"]
                            ),
                            hourly_kwh=list(row["hourly_kwh"]),
                            neg_energy_events=row["neg_energy_events"],
                            resets=row["resets"],
                            rollovers=row["rollovers"],
                            neg_power_samples=row["neg_power_samples"],
                            neg_power_run_max=row["neg_power_run_max"],
                            const_max_h=row["const_max_h"],
                            latency_max_s=row["latency_max_s"],
                            latency_grades=list(row["latency_grades"]),
                            first_time=row["first_time"],
                            last_time=row["last_time"],
                        )

    async def flush(
        self,
        touched: Iterable[str],
        *,
        unbound: dict[tuple[str, date, str, str], list[Any]],
        hits: Sequence[Hit],
        now: datetime,
        publishing: asyncio.Future[None] | None,
    ) -> None:
        """One transaction: point state (revision-checked), day rows, unbound counts, streaming
        findings. It commits only after `publishing` (the batch's `telemetry.points`) is
        acknowledged, so a point is never marked seen before its reading is out."""
        states = [self.cache[p] for p in touched if self.cache[p].dirty]
        days = [a for s in states for a in s.days.values() if a.dirty]
        try:
            async with self.database.transaction() as session:
                driver = await _driver(session, begin=True)
                if states and driver not in self._staged:
                    await driver.execute(_STAGING_TABLES)
                    self._staged.add(driver)
                if states:  # every dirty day belongs to a dirty state
                    await driver.copy_records_to_table(
                        _STATE_STAGE, records=_state_rows(states), schema_name="pg_temp"
                    )
                    if days:
                        await driver.copy_records_to_table(
                            _DAILY_STAGE,
                            records=[_daily_row(a) for a in days],
                            schema_name="pg_temp",
                        )
                    updated = await driver.fetchval(_MERGE)
                    if updated != len(states):
                        raise StateConflict("point state changed under this consumer; reloading")
                if unbound:
                    await driver.executemany(
                        _UNBOUND_UPSERT,
                        [
                            (mn, day, reason, detail, v[0], v[1], v[2])
                            for (mn, day, reason, detail), v in unbound.items()
                        ],
                    )
                if hits:
                    await self.findings.record(session, hits, now, accumulate=True)
                if publishing is not None:
                    await publishing
        except BaseException as exc:
            self._staged.clear()  # a rolled-back transaction may have created them
            if publishing is not None:
                if isinstance(exc, asyncio.CancelledError):
                    publishing.cancel()
                with contextlib.suppress(BaseException):  # the batch fails and is retried anyway
                    await publishing
            raise
        for state in states:
            state.rev += 1
            state.dirty = False
            if len(state.days) > 3:  # keep the last three days in memory
                for old in sorted(state.days)[:-3]:
                    del state.days[old]
        for agg in days:
            agg.dirty = False


def _json_loads(value: Any) -> dict[str, Any]:
    loaded = json.loads(value) if isinstance(value, str | bytes) else value
    return loaded if isinstance(loaded, dict) else {}


async def _driver(session: AsyncSession, *, begin: bool = False) -> Any:
    """The asyncpg connection under `session`. SQLAlchemy opens the database transaction at
    its first statement, so with `begin` one is sent first: statements sent on the driver
    directly then belong to the session's transaction instead of committing one by one."""
    connection = await session.connection()
    if begin:
        await connection.exec_driver_sql("SELECT 1")
    raw = await connection.get_raw_connection()
    return raw.driver_connection


_STATE_COLUMNS = (
    "point_id",
    "enterprise_id",
    "mn",
    "counter_kwh",
    "counter_time",
    "last_time",
    "last_valid_time",
    "last_received_at",
    "neg_run",
    "runs",
    "rev",
)
_DAILY_COLUMNS = (
    "point_id",
    "day",
    "enterprise_id",
    "mn",
    "interval_s",
    "energy_kwh",
    "reported_kwh",
    "deltas",
    "p_max",
    "p_min",
    "p_sum",
    "p_n",
    "samples",
    "valid_samples",
    "slots",
    "valid_slots",
    "live_slots",
    "hourly_kwh",
    "neg_energy_events",
    "resets",
    "rollovers",
    "neg_power_samples",
    "neg_power_run_max",
    "const_max_h",
    "latency_max_s",
    "latency_grades",
    "first_time",
    "last_time",
)

# A batch's rows are copied (COPY, binary) into temporary tables of the session, then merged
# with one statement each. Arrays and JSON travel as text and are cast by the merge (encoding
# them as arrays element by element costs the binder more than the whole COPY).
_STATE_STAGE = "validation_bind_state"
_DAILY_STAGE = "validation_bind_daily"
_STAGING_TABLES = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STATE_STAGE} (
  point_id text, enterprise_id text, mn text, counter_kwh float8, counter_time timestamptz,
  last_time timestamptz, last_valid_time timestamptz, last_received_at timestamptz,
  neg_run int, runs text, rev bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {_DAILY_STAGE} (
  point_id text, day date, enterprise_id text, mn text, interval_s int, energy_kwh float8,
  reported_kwh float8, deltas int, p_max float8, p_min float8, p_sum float8, p_n int,
  samples int, valid_samples int, slots bytea, valid_slots bytea, live_slots bytea,
  hourly_kwh text,
  neg_energy_events int, resets int, rollovers int, neg_power_samples int,
  neg_power_run_max int, const_max_h float8, latency_max_s float8, latency_grades text,
  first_time timestamptz, last_time timestamptz
) ON COMMIT DELETE ROWS
"""
_DAILY_CASTS = {"hourly_kwh": "hourly_kwh::float8[]", "latency_grades": "latency_grades::int[]"}
# Both merges in one statement (one round trip per batch): a data-modifying WITH runs to
# completion whether or not the outer query reads it. The count is of the state rows written:
# fewer than staged means another consumer moved a revision on (`StateConflict`).
_MERGE = f"""
WITH merged AS (
  INSERT INTO validation.point_state AS s ({", ".join(_STATE_COLUMNS)})
  SELECT {", ".join("runs::jsonb" if c == "runs" else c for c in _STATE_COLUMNS)}
  FROM pg_temp.{_STATE_STAGE}
  ON CONFLICT (point_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _STATE_COLUMNS[1:])}
  WHERE s.rev = EXCLUDED.rev - 1
  RETURNING 1
), daily AS (
  INSERT INTO validation.point_daily ({", ".join(_DAILY_COLUMNS)})
  SELECT {", ".join(_DAILY_CASTS.get(c, c) for c in _DAILY_COLUMNS)}
  FROM pg_temp.{_DAILY_STAGE}
  ON CONFLICT (point_id, day) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _DAILY_COLUMNS[2:])}
)
SELECT count(*) FROM merged
"""  # noqa: S608

_UNBOUND_UPSERT = """
INSERT INTO validation.unbound_readings AS u
  (mn, day, reason, detail, enterprise_id, count, last_seen_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (mn, day, reason, detail) DO UPDATE SET
  count = u.count + EXCLUDED.count, last_seen_at = greatest(u.last_seen_at, EXCLUDED.last_seen_at),
  enterprise_id = coalesce(EXCLUDED.enterprise_id, u.enterprise_id)
"""


def _state_rows(states: Sequence[PointState]) -> list[tuple[Any, ...]]:
    return [
        (
            s.point_id,
            s.enterprise_id,
            s.mn,
            s.counter_kwh,
            s.counter_time,
            s.last_time,
            s.last_valid_time,
            s.last_received_at,
            s.neg_run,
            to_json(s.runs).decode(),
            s.rev + 1,
        )
        for s in states
    ]


def _array_text(values: list[float] | list[int]) -> str:
    """PostgreSQL array input (`{1.5,0.0,1e-7}`): pydantic's JSON writes the shortest text that
    reads back as the same float8, about seven times faster than `repr` of the list."""
    return "{" + to_json(values).decode()[1:-1] + "}"


def _daily_row(a: DayAgg) -> tuple[Any, ...]:
    return (
        a.point_id,
        a.day,
        a.enterprise_id,
        a.mn,
        a.interval_s,
        a.energy_kwh,
        a.reported_kwh,
        a.deltas,
        a.p_max,
        a.p_min,
        a.p_sum,
        a.p_n,
        a.samples,
        a.valid_samples,
        bytes(a.slots),
        bytes(a.valid_slots),
        bytes(a.live_slots),
        _array_text(a.hourly_kwh),
        a.neg_energy_events,
        a.resets,
        a.rollovers,
        a.neg_power_samples,
        a.neg_power_run_max,
        a.const_max_h,
        a.latency_max_s,
        _array_text(a.latency_grades),
        a.first_time,
        a.last_time,
    )
