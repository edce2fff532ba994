"""Tables of the `alarm` schema (created by migration 0002)."""

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

SCHEMA = "alarm"
metadata = MetaData(schema=SCHEMA)


rule = Table(
    "rule",
    metadata,
    Column("code", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("name_en", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("params", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_by", Text),
)

rule_version = Table(
    "rule_version",
    metadata,
    Column("code", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("params", JSONB, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("changed_by", Text),
    Column("reason", Text),
)

runtime = Table(
    "runtime",
    metadata,
    Column("enterprise_id", Text, primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("state", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

state_change = Table(
    "state_change",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("enterprise_id", Text, nullable=False),
    Column("subject_kind", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("previous_state", Text),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("reason", Text),
    Column("evidence", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set when a re-judgement after late data no longer holds this change (migration 0003).
    Column("withdrawn_at", DateTime(timezone=True)),
    Index("ix_state_change_subject", "subject_id", "since"),
    Index("ix_state_change_enterprise", "enterprise_id", "since"),
)

alarm = Table(
    "alarm",
    metadata,
    Column("id", Text, primary_key=True),
    Column("rule_code", Text, nullable=False),
    Column("rule_version", Integer, nullable=False),
    Column("rule_name", Text, nullable=False),
    Column("enterprise_id", Text, nullable=False),
    Column("enterprise_name", Text),
    Column("district_code", Text),
    Column("zone", Text),
    Column("industry_code", Text),
    Column("subject_kind", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("group_id", Text),
    Column("facility_ids", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("point_ids", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("level", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("suppressed_by", JSONB),
    Column("first_at", DateTime(timezone=True), nullable=False),
    Column("last_at", DateTime(timezone=True), nullable=False),
    Column("recovered_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("dispatched_to", Text),
    Column("verification", Text),
    Column("explanation", Text, nullable=False),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("evidence", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Migration 0003: when the platform found it (first_at is when the violation began),
    # whether it was found in late or back-filled data, and a withdrawal after late data.
    Column("discovered_at", DateTime(timezone=True)),
    Column("late", Boolean, nullable=False, server_default=text("false")),
    Column("retracted_at", DateTime(timezone=True)),
    Column("retraction", JSONB),
    Index("ix_alarm_first_at", "first_at"),
    Index("ix_alarm_enterprise", "enterprise_id", "first_at"),
    Index("ix_alarm_district", "district_code", "first_at"),
    # One active alarm per (rule, subject): the merge rule of supervision.md §2.3.
    Index(
        "ux_alarm_active",
        "rule_code",
        "subject_id",
        unique=True,
        postgresql_where=text("active"),
    ),
)

journal = Table(
    "journal",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("alarm_id", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text, nullable=False),
    Column("actor_role", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("status_after", Text),
    Column("text", Text),
    Column("data", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Index("ix_journal_alarm", "alarm_id", "id"),
)

attachment = Table(
    "attachment",
    metadata,
    Column("id", Text, primary_key=True),
    Column("alarm_id", Text, nullable=False),
    Column("journal_id", BigInteger),
    Column("filename", Text, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("content", LargeBinary),
    Column("path", Text),
    Column("uploaded_by", Text, nullable=False),
    Column("uploaded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_attachment_alarm", "alarm_id"),
)

filing = Table(
    "outage_filing",
    metadata,
    Column("id", Text, primary_key=True),
    Column("enterprise_id", Text, nullable=False),
    Column("district_code", Text),
    Column("facility_ids", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("reason", Text, nullable=False),
    Column("category", Text, nullable=False, server_default=text("'maintenance'")),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False),
    Column("filed_by", Text, nullable=False),
    Column("filed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("decided_by", Text),
    Column("decided_at", DateTime(timezone=True)),
    Column("decision_note", Text),
    Index("ix_filing_enterprise", "enterprise_id", "starts_at"),
)

control_task = Table(
    "control_task",
    metadata,
    Column("task_id", Text, primary_key=True),
    Column("alert_id", Text, nullable=False),
    Column("enterprise_id", Text, nullable=False),
    Column("change", Text, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_to", DateTime(timezone=True)),
    Column("measures", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

quality_finding = Table(
    "quality_finding",
    metadata,
    Column("finding_id", Text, primary_key=True),
    Column("enterprise_id", Text, nullable=False),
    Column("rule_code", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("subject_kind", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("evidence", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
)

point_day_stats = Table(
    "point_day_stats",
    metadata,
    Column("kind", Text, primary_key=True),  # point | group
    Column("subject_id", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("total", Float, nullable=False),
    Column("bins", JSONB, nullable=False),
)

learned = Table(
    "learned",
    metadata,
    Column("kind", Text, primary_key=True),  # point | group
    Column("subject_id", Text, primary_key=True),
    Column("rated_kw", Float),
    Column("running_median", Float),
    Column("samples", BigInteger, nullable=False),
    Column("days", Integer, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False),
)

district_contact = Table(
    "district_contact",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("district_code", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("phone", Text),
    Column("webhook_url", Text),
    Column("min_level", Integer, nullable=False, server_default=text("1")),
    UniqueConstraint("district_code", "name"),
)

notification = Table(
    "notification",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("alarm_id", Text, nullable=False),
    Column("change", Text, nullable=False),
    Column("level", Integer, nullable=False),
    Column("channel", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("detail", Text),
    Column("dedup_key", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_notification_dedup", "dedup_key", "created_at"),
    Index("ix_notification_alarm", "alarm_id"),
    UniqueConstraint("alarm_id", "change", "level", "channel", "recipient", name="uq_notification"),
)

retained_sample = Table(
    "retained_sample",
    metadata,
    # Samples applied after an enterprise's checkpoint, kept to judge late data again
    # (engine.eventtime); deleted when the checkpoint is released (migration 0003).
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("enterprise_id", Text, nullable=False),
    Column("t", Float, nullable=False),
    Column("point_id", Text, nullable=False),
    Column("power", Float, nullable=False),
    Column("voltage", Float),
    Column("interval", Float, nullable=False, server_default=text("0")),
    Index("ix_retained_sample_enterprise", "enterprise_id", "t"),
)

outbox = outbox_table(metadata)
