"""Duty contacts, escalations and the notification log.

A duty contact (值班联系人) is a person with a phone number (SMS) and/or a webhook URL, the
incident levels they answer for (none: all) and the events they want: `incident_opened`,
`request_submitted`, `warning` (a deadline is near: `ECOWATT_OPS_ESCALATION_WARNING` of its
allowance is used), `breached` (the deadline passed), `report` (a monthly report was
stored). The configured webhooks (`ECOWATT_OPS_WEBHOOK_URLS`) receive every event.

An escalation is recorded once per (case, clock, stage, deadline) — stages `opened` (a new
case is announced), `warning`, `breached` — so nothing is told twice, and a level change
that moves a deadline warns again. Notifications are sent before the escalation commits: a
crash in between sends them again at the next check (at least once).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from ecowatt_ops.clocks.models import Level
from ecowatt_ops.desk.database import metadata

__all__ = [
    "EVENTS",
    "ContactIn",
    "ContactOut",
    "ContactUpdate",
    "DeskEvent",
    "NotificationOut",
    "duty_contact",
    "escalation",
    "notification",
]

DeskEvent = Literal["incident_opened", "request_submitted", "warning", "breached", "report"]
EVENTS: tuple[str, ...] = ("incident_opened", "request_submitted", "warning", "breached", "report")
EVENT_ZH = {
    "incident_opened": "新故障",
    "request_submitted": "新服务请求",
    "warning": "即将超时",
    "breached": "已超时",
    "report": "月度报告",
}

duty_contact = Table(
    "duty_contact",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("phone", Text),
    Column("webhook_url", Text),
    Column("levels", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("events", ARRAY(Text), nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("note", Text, nullable=False, server_default=""),
    Column("updated_by", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

escalation = Table(
    "escalation",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("subject_kind", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("clock", Text, nullable=False),
    Column("stage", Text, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    CheckConstraint("subject_kind IN ('incident','request')", name="subject_kind"),
    CheckConstraint("clock IN ('response','resolution','request')", name="clock"),
    CheckConstraint("stage IN ('opened','warning','breached')", name="stage"),
    UniqueConstraint(
        "subject_kind", "subject_id", "clock", "stage", "due_at", name="uq_escalation"
    ),
)

notification = Table(
    "notification",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("event", Text, nullable=False),
    Column("subject_kind", Text),
    Column("subject_id", Text),
    Column("channel", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
    Column("message", Text, nullable=False),
    CheckConstraint("channel IN ('sms','webhook')", name="channel"),
    CheckConstraint("outcome IN ('sent','logged','failed')", name="outcome"),
    Index("ix_notification_at", "at"),
    Index("ix_notification_subject", "subject_kind", "subject_id"),
)


class ContactIn(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    phone: str | None = Field(None, pattern=r"^\+?\d{5,20}$")
    webhook_url: str | None = Field(None, max_length=500, pattern=r"^https?://\S+$")
    levels: list[Level] = Field(
        default_factory=list, description="Incident levels this contact answers for; [] all."
    )
    events: list[DeskEvent] = Field(min_length=1)
    active: bool = True
    note: str = Field("", max_length=200)

    @field_validator("events")
    @classmethod
    def _unique(cls, events: list[str]) -> list[str]:
        return list(dict.fromkeys(events))


class ContactUpdate(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=50)
    phone: str | None = Field(None, pattern=r"^\+?\d{5,20}$")
    webhook_url: str | None = Field(None, max_length=500, pattern=r"^https?://\S+$")
    levels: list[Level] | None = None
    events: list[DeskEvent] | None = Field(None, min_length=1)
    active: bool | None = None
    note: str | None = Field(None, max_length=200)


class ContactOut(BaseModel):
    id: str
    name: str
    phone: str | None
    webhook_url: str | None
    levels: list[Level]
    events: list[DeskEvent]
    active: bool
    note: str
    updated_by: str
    updated_at: datetime


class NotificationOut(BaseModel):
    id: int
    at: datetime
    event: str
    event_name: str
    subject_kind: str | None
    subject_id: str | None
    channel: Literal["sms", "webhook"]
    recipient: str = Field(description="A masked phone number or the webhook's host.")
    outcome: Literal["sent", "logged", "failed"]
    detail: str
    message: str
