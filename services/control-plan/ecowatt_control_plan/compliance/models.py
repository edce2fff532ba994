"""Compliance: baselines per point and day, verdicts per target and hour, enterprise status per
hour, and the bureau's holiday calendar (days left out of baselines)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ecowatt_control_plan.database import METADATA

holiday = Table(
    "holiday",
    METADATA,
    Column("day", Date, primary_key=True),
    Column("name", Text, nullable=False),
    Column("updated_by", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

point_baseline = Table(
    "point_baseline",
    METADATA,
    Column("point_id", Text, nullable=False),
    Column("day", Date, nullable=False),
    Column("profile", ARRAY(Float), nullable=False),
    Column("peak_kwh", Float),
    Column("source", Text, nullable=False),  # history | learned | rated | none
    Column("days", Integer, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("point_id", "day"),
)

verdict = Table(
    "verdict",
    METADATA,
    Column("task_id", Text, nullable=False),
    Column("target_id", Text, nullable=False),
    Column("hour_start", DateTime(timezone=True), nullable=False),
    Column("enterprise_id", Text, nullable=False),
    Column("district_code", Text, nullable=False),
    Column("alert_id", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target_kind", Text, nullable=False),
    Column("verdict", Text, nullable=False),
    Column("reason", Text),
    Column("provisional", Boolean, nullable=False),
    Column("baseline_kwh", Float),
    Column("actual_kwh", Float),
    Column("evidence", JSONB, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("published_verdict", Text),
    Column("evaluated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("task_id", "target_id", "hour_start"),
    Index("ix_verdict_enterprise", "enterprise_id", "hour_start"),
    Index("ix_verdict_hour", "hour_start"),
)

enterprise_hour = Table(
    "enterprise_hour",
    METADATA,
    Column("enterprise_id", Text, nullable=False),
    Column("hour_start", DateTime(timezone=True), nullable=False),
    Column("task_id", Text, nullable=False),
    Column("alert_id", Text, nullable=False),
    Column("level", Text, nullable=False),
    Column("district_code", Text, nullable=False),
    Column("industry_code", Text),
    Column("performance_grade", Text),
    Column("status", Text, nullable=False),
    Column("provisional", Boolean, nullable=False),
    Column("producing", Boolean, nullable=False),
    Column("baseline_kwh", Float),
    Column("actual_kwh", Float),
    Column("counts", JSONB, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("published_status", Text),
    # What the judgement saw: the newest data write and the task revisions (re-judging).
    Column("data_seq", BigInteger, nullable=False, server_default=text("0")),
    Column("task_revisions", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("evaluated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("enterprise_id", "hour_start"),
    Index("ix_enterprise_hour_alert", "alert_id", "hour_start"),
)


STATUSES = ("合规生产", "停工", "未响应停产", "未响应减产", "未开启治污设备", "离线/无法判定")
"""Enterprise status of an hour, for dashboards (supervision.md §3.5)."""


class VerdictRead(BaseModel):
    task_id: str
    target_id: str
    hour_start: datetime
    enterprise_id: str
    district_code: str
    alert_id: str
    action: str
    target_kind: str
    verdict: str
    reason: str | None
    provisional: bool
    baseline_kwh: float | None
    actual_kwh: float | None
    evidence: dict[str, Any]
    revision: int


class EnterpriseHourRead(BaseModel):
    enterprise_id: str
    hour_start: datetime
    task_id: str
    alert_id: str
    level: str
    district_code: str
    industry_code: str | None
    performance_grade: str | None
    status: str
    provisional: bool
    producing: bool
    baseline_kwh: float | None
    actual_kwh: float | None
    counts: dict[str, int]


class StatusBoard(BaseModel):
    """Enterprise statuses of one hour, for the dashboard."""

    hour_start: datetime | None
    provisional: bool
    totals: dict[str, int] = Field(description="Enterprises per status")
    by_district: dict[str, dict[str, int]]
    enterprises: list[EnterpriseHourRead]


class HolidayIn(BaseModel):
    name: str = Field(min_length=1, max_length=50, description="e.g. 春节")


class HolidayRead(HolidayIn):
    day: date
    updated_by: str | None


class PassResult(BaseModel):
    hours: int
    enterprises: int
    verdicts: int
    published: int
    issues_opened: int
    issues_updated: int
    seconds: float
