"""Security alerts and their handling journal: tables and API models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ecowatt_auth.database import metadata

AlertStatus = Literal["open", "acknowledged", "resolved", "false_positive"]
Severity = Literal["low", "medium", "high"]

security_alert = Table(
    "security_alert",
    metadata,
    Column("id", Text, primary_key=True),
    Column("rule", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'open'")),
    Column("count", Integer, nullable=False, server_default=text("1")),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("evidence", JSONB, nullable=False, server_default=text("'{}'")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("handled_by", Text),
    Column("handled_at", DateTime(timezone=True)),
    Column("note", Text),
    CheckConstraint("status IN ('open','acknowledged','resolved','false_positive')", name="status"),
    CheckConstraint("severity IN ('low','medium','high')", name="severity"),
    # At most one alert per rule and subject is being worked on; repeats update it.
    Index(
        "uq_security_alert_active",
        "rule",
        "subject",
        unique=True,
        postgresql_where=text("status IN ('open','acknowledged')"),
    ),
    Index("ix_security_alert_last_seen", "last_seen"),
)

security_alert_action = Table(
    "security_alert_action",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "alert_id",
        Text,
        ForeignKey("security_alert.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("status", Text),
    Column("note", Text),
)


class AlertAction(BaseModel):
    at: datetime
    actor: str
    action: str
    status: str | None
    note: str | None


class SecurityAlert(BaseModel):
    id: str
    rule: str
    rule_name: str
    severity: Severity
    subject: str
    title: str
    status: AlertStatus
    count: int
    first_seen: datetime
    last_seen: datetime
    evidence: dict[str, Any]
    handled_by: str | None
    handled_at: datetime | None
    note: str | None


class SecurityAlertDetail(SecurityAlert):
    journal: list[AlertAction]


class Handling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["acknowledged", "resolved", "false_positive"] = Field(
        description="acknowledged: being looked at; resolved: dealt with; "
        "false_positive: not an incident"
    )
    note: str = Field(min_length=1, max_length=2000, description="处置说明")


class RuleInfo(BaseModel):
    code: str
    name: str
    severity: Severity
    description: str
    threshold: int | None
    window_s: int | None
