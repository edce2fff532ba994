"""Tables of the `validation` schema (SQLAlchemy Core)."""

from __future__ import annotations

from ecowatt_kernel.outbox import outbox_table
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

SCHEMA = "validation"
metadata = MetaData(schema=SCHEMA)

RULES_TABLE = Table(
    "rules",
    metadata,
    Column("code", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("params", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_by", Text),
)

RULE_VERSIONS = Table(
    "rule_versions",
    metadata,
    Column("code", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("params", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_by", Text),
    Column("reason", Text),
)

ENTERPRISES = Table(
    "enterprises",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("district_code", Text, nullable=False),
    Column("zone", Text),
    Column("industry_code", Text),
    Column("om_company", Text),
    Column("production_status", Text),
    Column("deleted", Boolean, nullable=False, server_default=text("false")),
)

POINT_STATE = Table(
    "point_state",
    metadata,
    Column("point_id", Text, primary_key=True),
    Column("enterprise_id", Text, nullable=False),
    Column("mn", Text, nullable=False),
    Column("counter_kwh", Float),
    Column("counter_time", DateTime(timezone=True)),
    Column("last_time", DateTime(timezone=True)),
    Column("last_valid_time", DateTime(timezone=True)),
    Column("last_received_at", DateTime(timezone=True)),
    Column("neg_run", Integer, nullable=False, server_default=text("0")),
    Column("runs", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("rev", BigInteger, nullable=False),
)

POINT_DAILY = Table(
    "point_daily",
    metadata,
    Column("point_id", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("enterprise_id", Text, nullable=False),
    Column("mn", Text, nullable=False),
    Column("interval_s", Integer, nullable=False),
    Column("energy_kwh", Float, nullable=False, server_default=text("0")),
    Column("reported_kwh", Float, nullable=False, server_default=text("0")),
    Column("deltas", Integer, nullable=False, server_default=text("0")),
    Column("p_max", Float),
    Column("p_min", Float),
    Column("p_sum", Float, nullable=False, server_default=text("0")),
    Column("p_n", Integer, nullable=False, server_default=text("0")),
    Column("samples", Integer, nullable=False, server_default=text("0")),
    Column("valid_samples", Integer, nullable=False, server_default=text("0")),
    Column("slots", LargeBinary, nullable=False),
    Column("valid_slots", LargeBinary, nullable=False),
    Column("live_slots", LargeBinary),  # NULL: written before 0004, every slot taken live
    Column("hourly_kwh", ARRAY(Float), nullable=False),
    Column("neg_energy_events", Integer, nullable=False, server_default=text("0")),
    Column("resets", Integer, nullable=False, server_default=text("0")),
    Column("rollovers", Integer, nullable=False, server_default=text("0")),
    Column("neg_power_samples", Integer, nullable=False, server_default=text("0")),
    Column("neg_power_run_max", Integer, nullable=False, server_default=text("0")),
    Column("const_max_h", Float, nullable=False, server_default=text("0")),
    Column("latency_max_s", Float, nullable=False, server_default=text("0")),
    Column("latency_grades", ARRAY(Integer), nullable=False),
    Column("first_time", DateTime(timezone=True)),
    Column("last_time", DateTime(timezone=True)),
    Column("expected_samples", Integer),
    Column("completeness", Float),
    Index("ix_point_daily_day_enterprise", "day", "enterprise_id"),
)

FINDINGS = Table(
    "findings",
    metadata,
    Column("id", Text, primary_key=True),
    Column("rule_code", Text, nullable=False),
    Column("rule_version", Integer, nullable=False),
    Column("severity", Text, nullable=False),
    Column("subject_kind", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("subject_name", Text),
    Column("enterprise_id", Text, nullable=False),
    Column("enterprise_name", Text),
    Column("district_code", Text),
    Column("zone", Text),
    Column("industry_code", Text),
    Column("om_company", Text),
    Column("status", Text, nullable=False),  # open | resolved
    Column("last_change", Text, nullable=False),  # open | updated | resolved | reopened
    Column("first_opened_at", DateTime(timezone=True), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Column("last_day", Date, nullable=False),
    Column("occurrences", Integer, nullable=False, server_default=text("1")),
    Column("reopen_count", Integer, nullable=False, server_default=text("0")),
    Column("evidence", JSONB, nullable=False),
    UniqueConstraint("rule_code", "subject_id", name="uq_findings_rule_subject"),
    Index("ix_findings_status_enterprise", "status", "enterprise_id"),
    Index("ix_findings_district", "district_code"),
)

FINDING_DAYS = Table(
    "finding_days",
    metadata,
    Column("finding_id", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("rule_code", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("enterprise_id", Text, nullable=False),
    Column("rule_version", Integer, nullable=False),
    Column("count", Integer, nullable=False, server_default=text("1")),
    Column("first_at", DateTime(timezone=True), nullable=False),
    Column("evidence", JSONB, nullable=False),
    Index("ix_finding_days_day", "day", "enterprise_id"),
)

UNBOUND = Table(
    "unbound_readings",
    metadata,
    Column("mn", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("reason", Text, primary_key=True),  # unknown_device | unknown_circuit | unknown_code
    Column("detail", Text, primary_key=True),  # circuit number or code ('' for a device)
    Column("enterprise_id", Text),
    Column("count", BigInteger, nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
)

DAILY_RUNS = Table(
    "daily_runs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("day", Date, nullable=False, index=True),
    Column("trigger", Text, nullable=False),  # schedule | api | cli
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", Text, nullable=False),  # running | done | failed
    Column("stats", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("error", Text),
)

OUTBOX = outbox_table(metadata)
