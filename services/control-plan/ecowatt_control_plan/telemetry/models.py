"""Per point and hour: the minute values of active power, and a summary for baselines.

`powers` holds 60 values (kW, after CT/PT), one per minute of the hour, the first valid
reading of each minute (NULL: none). Minute values are kept `minute_retention_days` and then
dropped (set NULL); the summary — filled sample slots, expected slots, the sum of the
values, minutes at or above the start/stop threshold (a sample counts for its expected
interval) — stays for baselines.
"""

from __future__ import annotations

from sqlalchemy import (
    REAL,
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Sequence,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY

from ecowatt_control_plan.database import METADATA

POINT_HOUR_SEQ = Sequence("point_hour_seq", metadata=METADATA)

point_hour = Table(
    "point_hour",
    METADATA,
    Column("point_id", Text, nullable=False),
    Column("hour_start", DateTime(timezone=True), nullable=False),
    Column("enterprise_id", Text, nullable=False),
    Column("powers", ARRAY(REAL)),
    Column("samples", Integer, nullable=False),
    Column("slots", Integer, nullable=False),
    Column("expected", Integer, nullable=False),
    Column("power_sum", Float, nullable=False),
    Column("run_minutes", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Increases with every write: the compliance pass re-judges an hour whose data changed.
    Column(
        "seq",
        BigInteger,
        POINT_HOUR_SEQ,
        nullable=False,
        server_default=POINT_HOUR_SEQ.next_value(),
    ),
    PrimaryKeyConstraint("point_id", "hour_start"),
    Index("ix_point_hour_hour", "hour_start"),
    Index("ix_point_hour_enterprise", "enterprise_id", "hour_start"),
)
