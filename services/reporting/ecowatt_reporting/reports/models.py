"""Generated reports, subscriptions and deliveries (tables), and their API shapes."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from ecowatt_reporting.database import metadata

ReportKind = Literal["daily", "weekly", "monthly"]
KIND_ZH = {"daily": "日报", "weekly": "周报", "monthly": "月报"}

REPORT = Table(
    "report",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("district_code", Text),
    Column("title", Text, nullable=False),
    Column("definition_version", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("progress", Integer, nullable=False, server_default=text("0")),
    Column("step", Text),
    Column("error", Text),
    Column("provisional", Boolean, nullable=False, server_default=text("false")),
    Column("trigger", Text, nullable=False),
    Column("requested_by", Text),
    Column("inputs", JSONB),
    Column("inputs_version", Text),
    Column("summary", JSONB),
    Column("content", JSONB),
    Column("xlsx", LargeBinary),
    Column("pdf", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)
Index("ix_report_period", REPORT.c.kind, REPORT.c.period_start, REPORT.c.created_at)

SUBSCRIPTION = Table(
    "subscription",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("recipient_kind", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("target", Text),
    Column("district_code", Text),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

DELIVERY = Table(
    "delivery",
    metadata,
    Column("report_id", UUID(as_uuid=True), primary_key=True),
    Column("subscription_id", UUID(as_uuid=True), primary_key=True),
    Column("recipient_kind", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("detail", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_delivery_recipient", DELIVERY.c.recipient_kind, DELIVERY.c.recipient)


class ReportRequest(BaseModel):
    """Generate a report for a past (or the current) period."""

    kind: ReportKind = Field(description="daily, weekly or monthly")
    day: date = Field(
        description="Any day inside the period: the day (daily), its ISO week (weekly, "
        "Monday–Sunday) or its calendar month (monthly).",
        examples=["2026-11-30"],
    )
    district_code: str | None = Field(
        None, description="Limit the report to one district (GB/T 2260); default the city."
    )


class ReportOut(BaseModel):
    """A generated (or generating) report, without its files."""

    id: uuid.UUID
    kind: ReportKind
    kind_name: str
    title: str
    period_start: date
    period_end: date = Field(description="Exclusive end of the period.")
    district_code: str | None
    definition_version: int
    status: Literal["queued", "running", "done", "failed"]
    progress: int = Field(description="0–100")
    step: str | None
    error: str | None
    provisional: bool = Field(description="True while the period has not ended.")
    trigger: str
    requested_by: str | None
    inputs_version: str | None
    inputs: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: dict[str, str] = Field(default_factory=dict)


class SubscriptionIn(BaseModel):
    """Who receives which reports, over which channel."""

    kind: Literal["daily", "weekly", "monthly", "all"] = "all"
    recipient_kind: Literal["role", "user"] = Field(
        "user", description="A role (everyone holding it) or one person (user id)."
    )
    recipient: str | None = Field(
        None, description="Role name or user id; default: the caller (recipient_kind=user)."
    )
    channel: Literal["inbox", "webhook", "sms"] = Field(
        "inbox",
        description="inbox: listed at GET /reports/inbox; webhook: a signed POST to `target`; "
        "sms: a text to `target` (a phone number).",
    )
    target: str | None = Field(None, description="Webhook URL or phone number.")
    district_code: str | None = Field(
        None, description="Only reports of this district (None: city reports)."
    )


class SubscriptionOut(SubscriptionIn):
    id: uuid.UUID
    active: bool
    created_by: str
    created_at: datetime
