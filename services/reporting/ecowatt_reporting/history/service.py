"""Writing the history: `telemetry.points` → raw samples and rollups, idempotently.

One handler call gets one partition's records (keyed by enterprise). The batch becomes one
SQL statement in one transaction:

1. the readings are inserted into `point_sample` with `ON CONFLICT DO NOTHING`; its
   `RETURNING` yields exactly the rows that were new — a redelivered reading (same point,
   data time and kind) returns nothing;
2. only those new rows are added to the 15-minute, hourly and daily rollups (sums, counts,
   max, min: commutative, so the order in which readings arrive does not matter) and to the
   latest values (the newest data time wins);
3. the transaction commits, then the bus commits the offsets.

So a redelivered batch, a batch handled twice after a rebalance (the second insert waits on
the first's unique-index entries and then finds them) or readings arriving out of order all
leave rollups equal to a recomputation from the raw rows (`recompute`, tested).

Energy: a real-time reading's `energy_delta_kwh` was used in the interval that *ends* at its
data time, so it counts in the bucket of (data time − 1 µs): the reading at 10:15:00 closes
the 10:00 quarter. Minute data are dated at their interval's start and count there. A delta
that spans a gap (a logger offline for two hours) lands in the bucket where it was read.

Readings dated before the raw retention or too far in the future are refused and counted in
`history_reject` (reason `too_old` / `future`).

Why one module of ~630 lines: the writer, the maintenance (partitions, retention) and
`recompute` (the check that rollups equal the raw rows) share the SQL of the rollups
(`_CONTRIBUTIONS`, `_ROLLUP_*`, `ROLLUP_15M_PARTS`): the check must read what the writer
writes, from the same statements.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

from ecowatt_kernel.bus import Record, TransientError
from ecowatt_kernel.contracts import PointReading, decode
from ecowatt_kernel.contracts.envelope import TYPE_HEADER, VERSION_HEADER
from ecowatt_kernel.db import Database
from prometheus_client import Counter
from pydantic_core import from_json
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_reporting.history.models import KINDS, MAIN_VALUES, SAMPLE_KINDS
from ecowatt_reporting.history.partitions import (
    POINT_SAMPLE_PARTS,
    ROLLUP_15M_PARTS,
    Partition,
    PartitionedTable,
)

__all__ = [
    "HistoryWriter",
    "Maintenance",
    "WriteResult",
    "recompute",
    "rollup_differences",
]

_logger = logging.getLogger(__name__)
HISTORY_READINGS = Counter(
    "ecowatt_reporting_history_readings_total",
    "telemetry.points readings handled by the history, by outcome.",
    ["outcome"],
)
_TICK = timedelta(microseconds=1)

_ROLLUP_SET = """
    energy_kwh = r.energy_kwh + excluded.energy_kwh,
    energy_n = r.energy_n + excluded.energy_n,
    power_sum = r.power_sum + excluded.power_sum,
    power_n = r.power_n + excluded.power_n,
    power_max = GREATEST(r.power_max, excluded.power_max),
    power_min = LEAST(r.power_min, excluded.power_min),
    samples = r.samples + excluded.samples,
    valid_samples = r.valid_samples + excluded.valid_samples,
    updated_at = now()"""
_ROLLUP_COLUMNS = (
    "enterprise_id, energy_kwh, energy_n, power_sum, power_n, power_max, power_min, samples, "
    "valid_samples"
)
_ROLLUP_AGGREGATES = (
    "min(enterprise_id), sum(e), sum(en), coalesce(sum(p), 0), count(p), max(pmax), min(pmin), "
    "sum(s), sum(vs)"
)
BUCKETS = {
    "rollup_15m": "date_bin('15 minutes', t, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
    "rollup_1h": "date_trunc('hour', t)",
    "rollup_1d": "(t AT TIME ZONE CAST(:tz AS text))::date",
}
"""Bucket of a contribution at time `t`, per rollup table (the day is the local day)."""
BUCKET_COLUMN = {"rollup_15m": "bucket", "rollup_1h": "bucket", "rollup_1d": "day"}

_CONTRIBUTIONS = """
    SELECT point_id, enterprise_id,
           CASE WHEN kind = 0 THEN data_time - interval '1 microsecond' ELSE data_time END AS t,
           energy_kwh AS e, 1 AS en, NULL::float8 AS p, NULL::float8 AS pmax,
           NULL::float8 AS pmin, 0 AS s, 0 AS vs
      FROM {source} WHERE kind IN (0, 1) AND energy_kwh IS NOT NULL
    UNION ALL
    SELECT point_id, enterprise_id, data_time, 0::float8, 0,
           CASE WHEN valid THEN power_kw END,
           CASE WHEN valid THEN GREATEST(power_kw, power_max_kw) END,
           CASE WHEN valid THEN LEAST(power_kw, power_min_kw) END,
           1, valid::int
      FROM {source} WHERE kind IN (0, 1)"""
"""What each sample contributes to rollups: its energy (at its energy time) and its power and
sample counts (at its data time). The writer and `recompute` share it."""


def _rollup_upsert(table: str, select: str) -> str:
    column = BUCKET_COLUMN[table]
    txid = ", txid = pg_current_xact_id()::text::bigint" if table == "rollup_15m" else ""
    return f"""
    INSERT INTO {table} AS r (point_id, {column}, {_ROLLUP_COLUMNS})
    {select}
    ON CONFLICT (point_id, {column}) DO UPDATE SET {_ROLLUP_SET}{txid}
    RETURNING 1"""


_FROM_QUARTERS = (
    "SELECT point_id, {bucket}, min(enterprise_id), sum(e), sum(en), sum(ps), sum(pn), "
    "max(pmax), min(pmin), sum(s), sum(vs) FROM quarters GROUP BY 1, 2"
)

WRITE_SQL = f"""
WITH new AS (
    INSERT INTO point_sample (point_id, data_time, kind, enterprise_id, power_kw, power_max_kw,
                              power_min_kw, energy_kwh, energy_total_kwh, energy_interval_kwh,
                              valid, extra, quality)
    SELECT * FROM history_staging
    ON CONFLICT DO NOTHING
    RETURNING point_id, data_time, kind, enterprise_id, power_kw, power_max_kw, power_min_kw,
              energy_kwh, valid
),
parts AS ({_CONTRIBUTIONS.format(source="new")}),
quarters AS (
    SELECT point_id, {BUCKETS["rollup_15m"]} AS b, min(enterprise_id) AS enterprise_id,
           sum(e) AS e, sum(en) AS en, coalesce(sum(p), 0) AS ps, count(p) AS pn,
           max(pmax) AS pmax, min(pmin) AS pmin, sum(s) AS s, sum(vs) AS vs
      FROM parts GROUP BY 1, 2
),
r15 AS ({_rollup_upsert("rollup_15m", "SELECT * FROM quarters")}),
r1h AS ({_rollup_upsert("rollup_1h", _FROM_QUARTERS.format(bucket="date_trunc('hour', b)"))}),
r1d AS ({
    _rollup_upsert(
        "rollup_1d", _FROM_QUARTERS.format(bucket="(b AT TIME ZONE CAST(:tz AS text))::date")
    )
}),
latest AS (
    INSERT INTO latest_value AS l (point_id, enterprise_id, data_time, kind, power_kw,
                                   energy_total_kwh, valid, extra)
    SELECT * FROM unnest(
        CAST(:l_point_id AS text[]), CAST(:l_enterprise_id AS text[]),
        CAST(:l_data_time AS timestamptz[]), CAST(:l_kind AS int2[]),
        CAST(:l_power_kw AS float8[]), CAST(:l_energy_total_kwh AS float8[]),
        CAST(:l_valid AS bool[]), CAST(:l_extra AS jsonb[]))
    ON CONFLICT (point_id) DO UPDATE SET
        enterprise_id = excluded.enterprise_id, data_time = excluded.data_time,
        kind = excluded.kind, power_kw = excluded.power_kw,
        energy_total_kwh = excluded.energy_total_kwh, valid = excluded.valid,
        extra = excluded.extra, updated_at = now(),
        txid = pg_current_xact_id()::text::bigint
      WHERE l.data_time < excluded.data_time
    RETURNING 1
)
SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM r15), (SELECT count(*) FROM r1h),
       (SELECT count(*) FROM r1d), (SELECT count(*) FROM latest)
"""
"""One batch in one statement. Duplicates inside the batch are dropped in Python first (an
insert may not meet its own row twice); the raw insert's RETURNING gives the new rows only;
their contributions are summed into quarter hours once, and hours and local days are summed
from the quarters (a quarter hour never straddles an hour or a local day: time zones are
offset by multiples of 15 minutes). Latest values: the newest sample per point of the batch
replaces the stored one only if newer — a redelivered sample is never newer."""

SAMPLE_COLUMNS = [
    "point_id",
    "data_time",
    "kind",
    "enterprise_id",
    "power_kw",
    "power_max_kw",
    "power_min_kw",
    "energy_kwh",
    "energy_total_kwh",
    "energy_interval_kwh",
    "valid",
    "extra",
    "quality",
]
_LATEST_COLUMNS = {
    name: SAMPLE_COLUMNS.index(name)
    for name in (
        "point_id",
        "enterprise_id",
        "data_time",
        "kind",
        "power_kw",
        "energy_total_kwh",
        "valid",
        "extra",
    )
}
_STAGING_SQL = (
    "CREATE TEMP TABLE IF NOT EXISTS history_staging "
    "(LIKE reporting.point_sample) ON COMMIT DELETE ROWS"
)
"""A batch is copied (binary COPY) into this per-connection table, then inserted from it: far
cheaper than binding 13 arrays of 20,000 values."""


def _json_floats(items: list[tuple[str, float]]) -> str:
    """JSON of canonical-quantity values (keys are plain ASCII names, values finite floats)."""
    return "{" + ",".join(f'"{k}":{v!r}' for k, v in items) + "}"


REJECT_SQL = """
INSERT INTO history_reject AS h (day, point_id, reason, enterprise_id, count, first_data_time,
                                 last_data_time)
SELECT * FROM unnest(CAST(:day AS date[]), CAST(:point_id AS text[]), CAST(:reason AS text[]),
                     CAST(:enterprise_id AS text[]), CAST(:count AS int[]),
                     CAST(:first AS timestamptz[]), CAST(:last AS timestamptz[]))
ON CONFLICT (day, point_id, reason) DO UPDATE SET
    count = h.count + excluded.count,
    first_data_time = LEAST(h.first_data_time, excluded.first_data_time),
    last_data_time = GREATEST(h.last_data_time, excluded.last_data_time),
    updated_at = now()
"""


class Sample(Protocol):
    """What the writer reads of a reading: a `PointReading`, or a `FastSample`."""

    @property
    def point_id(self) -> str: ...
    @property
    def enterprise_id(self) -> str: ...
    @property
    def data_time(self) -> datetime: ...
    @property
    def interval(self) -> str: ...
    @property
    def values(self) -> dict[str, float]: ...
    @property
    def quality(self) -> dict[str, list[str]]: ...
    @property
    def valid(self) -> bool: ...


class FastSample(NamedTuple):
    point_id: str
    enterprise_id: str
    data_time: datetime
    interval: str
    values: dict[str, float]
    quality: dict[str, list[str]]
    valid: bool


_POINT_TYPE = PointReading.event_type.encode()
_POINT_VERSION = str(PointReading.event_version).encode()


def fast_sample(record: Record) -> FastSample | None:
    """The fields the history needs, read straight from a `telemetry.point` envelope (2–3×
    cheaper than validating the pydantic models); None when anything is not plainly as the
    contract says — the caller then decodes strictly, which names the fault."""
    if record.header(TYPE_HEADER) != _POINT_TYPE or record.header(VERSION_HEADER) != _POINT_VERSION:
        return None
    try:
        data = from_json(record.value)["data"]
        point_id, enterprise_id = data["point_id"], data["enterprise_id"]
        values, moment = data["values"], data["data_time"]
        interval = data.get("interval", "realtime")
        quality = data.get("quality") or {}
        valid = data.get("valid", True)
        if not (
            type(point_id) is str
            and type(enterprise_id) is str
            and type(values) is dict
            and type(moment) is str
            and interval in KINDS
            and type(quality) is dict
            and type(valid) is bool
            and data.get("mn") is not None
        ):
            return None
        for value in values.values():
            if type(value) is not float and type(value) is not int:
                return None
        data_time = datetime.fromisoformat(moment)
    except (ValueError, KeyError, TypeError):
        return None
    if data_time.tzinfo is None:
        return None
    return FastSample(point_id, enterprise_id, data_time, interval, values, quality, valid)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass
class WriteResult:
    """What one batch did."""

    readings: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class HistoryWriter:
    """Consumes `telemetry.points` (handler `handle`) into the history tables."""

    def __init__(
        self,
        *,
        database: Database,
        timezone: str,
        raw_retention_days: int,
        future_tolerance_h: float,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.database = database
        self.timezone = timezone
        self.raw_retention_days = raw_retention_days
        self.future_tolerance = timedelta(hours=future_tolerance_h)
        self.clock = clock
        self._known: dict[str, set[datetime]] = {}

    async def handle(self, records: Sequence[Record]) -> None:
        """Bus handler: decode (a record that is no event goes to the DLQ) and write."""
        readings: list[Sample] = []
        for record in records:
            sample = fast_sample(record)
            if sample is not None:
                readings.append(sample)
                continue
            event = decode(record).data  # the strict way: ContractError names the fault
            if isinstance(event, PointReading):
                readings.append(event)
        if readings:
            await self.write(readings)

    def horizon(self) -> datetime:
        """Readings before this moment are older than the raw retention."""
        return POINT_SAMPLE_PARTS.start_of(self.clock()) - timedelta(days=self.raw_retention_days)

    async def write(self, readings: Sequence[Sample]) -> WriteResult:
        """Store `readings` and add the new ones to the rollups, in one transaction."""
        result = WriteResult(readings=len(readings))
        now = self.clock()
        oldest, newest = self.horizon(), now + self.future_tolerance
        records: list[tuple[Any, ...]] = []
        refused: dict[tuple[str, str], list[Any]] = {}
        seen: set[tuple[str, datetime, int]] = set()
        latest: dict[str, tuple[datetime, int]] = {}
        kinds, main, finite = KINDS, MAIN_VALUES, math.isfinite
        append = records.append
        for reading in readings:
            t = reading.data_time
            if t < oldest or t > newest:
                reason = "too_old" if t < oldest else "future"
                entry = refused.setdefault(
                    (reading.point_id, reason), [reading.enterprise_id, 0, t, t]
                )
                entry[1] += 1
                entry[2], entry[3] = min(entry[2], t), max(entry[3], t)
                continue
            point_id = reading.point_id
            kind = kinds.get(reading.interval, 4)
            key = (point_id, t, kind)
            if key in seen:
                continue
            seen.add(key)
            if kind in SAMPLE_KINDS:
                previous = latest.get(point_id)
                if previous is None or t > previous[0]:
                    latest[point_id] = (t, len(records))
            values = reading.values
            get = values.get
            extra = [(k, v) for k, v in values.items() if k not in main and finite(v)]
            flags = {k: v for k, v in reading.quality.items() if v} if reading.quality else None
            append(
                (
                    point_id,
                    t,
                    kind,
                    reading.enterprise_id,
                    _finite(get("active_power_kw")),
                    _finite(get("active_power_kw:max")),
                    _finite(get("active_power_kw:min")),
                    _finite(get("energy_delta_kwh")),
                    _finite(get("energy_total_kwh", get("energy_total_kwh:max"))),
                    _finite(get("energy_interval_kwh")),
                    reading.valid,
                    _json_floats(extra) if extra else None,
                    json.dumps(flags, ensure_ascii=False) if flags else None,
                )
            )
        latest_rows = [records[index] for _, index in latest.values()]
        params: dict[str, Any] = {"tz": self.timezone}
        for name, position in _LATEST_COLUMNS.items():
            params["l_" + name] = [row[position] for row in latest_rows]
        try:
            if records:
                await self._ensure_partitions([r[1] for r in records])
            async with self.database.transaction() as session:
                if records:
                    await session.execute(text(_STAGING_SQL))
                    connection = await session.connection()
                    raw = (await connection.get_raw_connection()).driver_connection
                    assert raw is not None
                    await raw.copy_records_to_table(
                        "history_staging", records=records, columns=SAMPLE_COLUMNS
                    )
                    row = (await session.execute(text(WRITE_SQL), params)).one()
                    result.inserted = int(row[0])
                if refused:
                    await _record_refusals(session, now, refused)
        except DBAPIError as exc:
            if "no partition of relation" in str(exc):
                # A partition this process believed in was dropped (retention elsewhere).
                self._known.clear()
                raise TransientError(f"history partition missing: {exc.orig}") from exc
            raise
        result.duplicates = (
            len(readings) - result.inserted - sum(entry[1] for entry in refused.values())
        )
        for (_, reason), entry in refused.items():
            result.rejected[reason] = result.rejected.get(reason, 0) + entry[1]
        HISTORY_READINGS.labels("stored").inc(result.inserted)
        HISTORY_READINGS.labels("duplicate").inc(result.duplicates)
        for reason, count in result.rejected.items():
            HISTORY_READINGS.labels(reason).inc(count)
        return result

    async def _ensure_partitions(self, times: Sequence[datetime]) -> None:
        wanted: dict[PartitionedTable, set[datetime]] = {}
        first, last = min(times), max(times)
        for table, span in (
            (POINT_SAMPLE_PARTS, (first, last)),
            (ROLLUP_15M_PARTS, (first - _TICK, last)),
        ):
            starts = set(table.starts_between(*span))
            missing = starts - self._known.setdefault(table.parent, set())
            if missing:
                wanted[table] = missing
        if not wanted:
            return
        async with self.database.engine.begin() as connection:
            for table, starts in wanted.items():
                await table.ensure(connection, starts)
        for table, starts in wanted.items():
            self._known[table.parent].update(starts)


async def _record_refusals(
    session: AsyncSession, now: datetime, refused: dict[tuple[str, str], list[Any]]
) -> None:
    day = now.date()
    keys = sorted(refused)
    await session.execute(
        text(REJECT_SQL),
        {
            "day": [day] * len(keys),
            "point_id": [k[0] for k in keys],
            "reason": [k[1] for k in keys],
            "enterprise_id": [refused[k][0] for k in keys],
            "count": [refused[k][1] for k in keys],
            "first": [refused[k][2] for k in keys],
            "last": [refused[k][3] for k in keys],
        },
    )


# ------------------------------------------------------------------------------ maintenance


class Maintenance:
    """Creates partitions ahead and applies retention (the hourly job)."""

    def __init__(
        self,
        *,
        database: Database,
        raw_retention_days: int,
        rollup_retention_days: int,
        ahead_days: int,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.database = database
        self.raw_retention_days = raw_retention_days
        self.rollup_retention_days = rollup_retention_days
        self.ahead_days = ahead_days
        self.clock = clock

    async def run(self) -> dict[str, list[str]]:
        """Create the partitions of the coming days, drop the expired ones; names touched."""
        now = self.clock()
        today = POINT_SAMPLE_PARTS.start_of(now)
        created, dropped = [], []
        async with self.database.engine.begin() as connection:
            created += await POINT_SAMPLE_PARTS.ensure(
                connection,
                set(
                    POINT_SAMPLE_PARTS.starts_between(
                        today - timedelta(days=1), today + timedelta(days=self.ahead_days)
                    )
                ),
            )
            created += await ROLLUP_15M_PARTS.ensure(
                connection,
                set(
                    ROLLUP_15M_PARTS.starts_between(
                        today - timedelta(days=1), today + timedelta(days=self.ahead_days)
                    )
                ),
            )
        async with self.database.engine.begin() as connection:
            dropped += await POINT_SAMPLE_PARTS.drop_before(
                connection, today - timedelta(days=self.raw_retention_days)
            )
            if self.rollup_retention_days > 0:
                dropped += await ROLLUP_15M_PARTS.drop_before(
                    connection, today - timedelta(days=self.rollup_retention_days)
                )
        if created or dropped:
            _logger.info("history partitions: created %s, dropped %s", created, dropped)
        return {"created": created, "dropped": dropped}

    async def partitions(self) -> list[Partition]:
        """Every partition of the history tables with its size."""
        async with self.database.engine.connect() as connection:
            return [
                *await POINT_SAMPLE_PARTS.existing(connection),
                *await ROLLUP_15M_PARTS.existing(connection),
            ]


# ---------------------------------------------------------------------- recomputation


async def recompute(
    session: AsyncSession,
    *,
    table: str,
    timezone: str,
    point_ids: Sequence[str],
    since: datetime,
    until: datetime,
) -> dict[tuple[str, Any], dict[str, Any]]:
    """The rollup rows of `table` for `point_ids` computed afresh from the raw samples with
    data time in [since, until): {(point_id, bucket): row}."""
    if table not in BUCKETS:
        raise ValueError(f"unknown rollup table {table!r}")
    source = (
        "(SELECT * FROM point_sample WHERE point_id = ANY(CAST(:points AS text[])) "
        "AND data_time >= :since AND data_time < :until) AS raw"
    )
    sql = (
        f"WITH parts AS ({_CONTRIBUTIONS.format(source=source)}) "
        f"SELECT point_id, {BUCKETS[table]} AS bucket, {_ROLLUP_AGGREGATES} "
        "FROM parts GROUP BY 1, 2"
    )
    rows = await session.execute(
        text(sql), {"points": list(point_ids), "since": since, "until": until, "tz": timezone}
    )
    names = ["enterprise_id", *_ROLLUP_COLUMNS.split(", ")[1:]]
    return {(r[0], r[1]): dict(zip(names, r[2:], strict=True)) for r in rows}


async def rollup_differences(
    session: AsyncSession,
    *,
    table: str,
    timezone: str,
    point_ids: Sequence[str],
    since: datetime,
    until: datetime,
    tolerance: float = 1e-6,
) -> list[str]:
    """Where the stored rollups of `table` differ from a recomputation (empty: none).

    Buckets are compared for contributions with data time in [since, until); choose a
    window whose edges fall on bucket edges of `table`."""
    expected = await recompute(
        session, table=table, timezone=timezone, point_ids=point_ids, since=since, until=until
    )
    column = BUCKET_COLUMN[table]
    keys = {k[1] for k in expected}
    if not keys:
        return []
    rows = await session.execute(
        text(
            f"SELECT point_id, {column}, {_ROLLUP_COLUMNS} FROM {table} "
            f"WHERE point_id = ANY(CAST(:points AS text[])) AND {column} >= :low "
            f"AND {column} <= :high"
        ),
        {"points": list(point_ids), "low": min(keys), "high": max(keys)},
    )
    stored = {(r[0], r[1]): r for r in rows}
    problems = []
    for key, want in expected.items():
        have = stored.get(key)
        if have is None:
            problems.append(f"{table} {key}: missing")
            continue
        for index, name in enumerate(want, start=2):
            a, b = have[index], want[name]
            if isinstance(b, float) or isinstance(a, float):
                if a is None or b is None:
                    same = a is b
                else:
                    same = abs(float(a) - float(b)) <= tolerance * max(1.0, abs(float(b)))
            else:
                same = a == b
            if not same:
                problems.append(f"{table} {key} {name}: stored {a}, recomputed {b}")
    for key in set(stored) - set(expected):
        problems.append(f"{table} {key}: stored but nothing to recompute from")
    return problems
