"""History tables: raw samples (partitioned by day), rollups, latest values, refusals.

`point_sample` holds every `telemetry.points` reading, one row per (point, data time, kind),
in daily range partitions of `data_time` (UTC days) that the maintenance job creates ahead
and drops after the raw retention. Rollups are kept (15-minute rows in monthly partitions):

| table        | bucket                       | kept                                 |
|--------------|------------------------------|--------------------------------------|
| point_sample | none (raw)                   | `reporting_raw_retention_days` (400) |
| rollup_15m   | 15 minutes (UTC-aligned)     | `reporting_rollup_retention_days`    |
| rollup_1h    | hour                         | always                               |
| rollup_1d    | local day (`timezone`)       | always                               |

A rollup row sums what its bucket's samples contributed: energy (the readings'
`energy_delta_kwh`), valid power values (sum, count, max, min), samples and valid samples.
Mean power = power_sum / power_n; completeness = valid_samples / expected samples.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ecowatt_reporting.database import metadata, txid_column

KINDS = {"realtime": 0, "minute": 1, "hour": 2, "day": 3, "other": 4}
"""`PointReading.interval` → `point_sample.kind`. Real-time and minute data are samples
(they feed rollups); hour and day uploads are kept raw only (the devices' own summaries)."""
SAMPLE_KINDS = (0, 1)
KIND_NAMES = {v: k for k, v in KINDS.items()}

MAIN_VALUES = (
    "active_power_kw",
    "active_power_kw:max",
    "active_power_kw:min",
    "energy_delta_kwh",
    "energy_total_kwh",
    "energy_interval_kwh",
)
"""Values with a column of their own; every other value of a reading goes to `extra`."""

POINT_SAMPLE = Table(
    "point_sample",
    metadata,
    Column("point_id", Text, primary_key=True),
    Column("data_time", DateTime(timezone=True), primary_key=True),
    Column("kind", SmallInteger, primary_key=True),
    Column("enterprise_id", Text, nullable=False),
    Column("power_kw", Float),
    Column("power_max_kw", Float),
    Column("power_min_kw", Float),
    Column("energy_kwh", Float),
    Column("energy_total_kwh", Float),
    Column("energy_interval_kwh", Float),
    Column("valid", Boolean, nullable=False),
    Column("extra", JSONB),
    Column("quality", JSONB),
    postgresql_partition_by="RANGE (data_time)",
)


def _rollup_columns() -> list[Column[object]]:
    return [
        Column("enterprise_id", Text, nullable=False),
        Column("energy_kwh", Float, nullable=False, server_default=text("0")),
        Column("energy_n", Integer, nullable=False, server_default=text("0")),
        Column("power_sum", Float, nullable=False, server_default=text("0")),
        Column("power_n", Integer, nullable=False, server_default=text("0")),
        Column("power_max", Float),
        Column("power_min", Float),
        Column("samples", Integer, nullable=False, server_default=text("0")),
        Column("valid_samples", Integer, nullable=False, server_default=text("0")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


ROLLUP_15M = Table(
    "rollup_15m",
    metadata,
    Column("point_id", Text, primary_key=True),
    Column("bucket", DateTime(timezone=True), primary_key=True),
    *_rollup_columns(),
    txid_column(),
    postgresql_partition_by="RANGE (bucket)",
)
Index("ix_rollup_15m_txid", ROLLUP_15M.c.txid, ROLLUP_15M.c.point_id, ROLLUP_15M.c.bucket)

ROLLUP_1H = Table(
    "rollup_1h",
    metadata,
    Column("point_id", Text, primary_key=True),
    Column("bucket", DateTime(timezone=True), primary_key=True),
    *_rollup_columns(),
)

ROLLUP_1D = Table(
    "rollup_1d",
    metadata,
    Column("point_id", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    *_rollup_columns(),
)
Index("ix_rollup_1d_day", ROLLUP_1D.c.day)

LATEST_VALUE = Table(
    "latest_value",
    metadata,
    Column("point_id", Text, primary_key=True),
    Column("enterprise_id", Text, nullable=False),
    Column("data_time", DateTime(timezone=True), nullable=False),
    Column("kind", SmallInteger, nullable=False),
    Column("power_kw", Float),
    Column("energy_total_kwh", Float),
    Column("valid", Boolean, nullable=False),
    Column("extra", JSONB),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    txid_column(),
)
Index("ix_latest_value_txid", LATEST_VALUE.c.txid, LATEST_VALUE.c.point_id)

HISTORY_REJECT = Table(
    "history_reject",
    metadata,
    Column("day", Date, primary_key=True),
    Column("point_id", Text, primary_key=True),
    Column("reason", Text, primary_key=True),
    Column("enterprise_id", Text, nullable=False),
    Column("count", Integer, nullable=False),
    Column("first_data_time", DateTime(timezone=True), nullable=False),
    Column("last_data_time", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
"""Readings refused by the history (reason `too_old`: before the raw retention; `future`:
beyond the future tolerance), counted per day of arrival, point and reason."""

HISTORY_META = Table(
    "history_meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
"""Facts about the history itself, e.g. that development demo days were synthesised."""
