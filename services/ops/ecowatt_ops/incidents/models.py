"""Incident tables and API models.

Status: open → responded → mitigated (temporary workaround) → resolved → verified; a case
that was no fault is cancelled. The root cause can be written at any point before
verification. Every change is a row of the append-only timeline (`ops.incident_event`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Sequence,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ecowatt_ops.clocks.models import ClockState, Level
from ecowatt_ops.desk.database import metadata
from ecowatt_ops.desk.timeline import TimelineEntry, timeline_table

__all__ = [
    "ACTIVE",
    "SOURCE_ZH",
    "STATUS_ZH",
    "IncidentCreate",
    "IncidentDetail",
    "IncidentRead",
    "IncidentStatus",
    "IncidentUpdate",
    "Note",
    "incident",
    "incident_event",
    "incident_number",
]

IncidentStatus = Literal["open", "responded", "mitigated", "resolved", "verified", "cancelled"]
Source = Literal["manual", "alertmanager", "platform"]
STATUS_ZH = {
    "open": "待响应",
    "responded": "处理中",
    "mitigated": "已临时恢复",
    "resolved": "已解决",
    "verified": "已验证",
    "cancelled": "已撤销",
}
SOURCE_ZH = {"manual": "人工登记", "alertmanager": "监控告警", "platform": "平台自检"}
ACTIVE = ("open", "responded", "mitigated", "resolved")
"""Not yet verified or cancelled: on the tracking list, and the holder of its correlation key."""

incident_number = Sequence("incident_number_seq", metadata=metadata)

incident = Table(
    "incident",
    metadata,
    Column("id", Text, primary_key=True),
    Column("number", Text, nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("impact", Text, nullable=False, server_default=""),
    Column("affected_function", Text, nullable=False, server_default=""),
    Column("level", Text, nullable=False),
    Column("hardware", Boolean, nullable=False, server_default=text("false")),
    Column("status", Text, nullable=False, server_default="open"),
    Column("source", Text, nullable=False),
    Column("correlation", Text),
    Column("signals", JSONB, nullable=False, server_default=text("'{}'")),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("opened_by", Text, nullable=False),
    Column("opened_by_name", Text),
    Column("assignee", Text),
    Column("assignee_name", Text),
    Column("response_due", DateTime(timezone=True), nullable=False),
    Column("response_warn_at", DateTime(timezone=True), nullable=False),
    Column("resolution_due", DateTime(timezone=True), nullable=False),
    Column("resolution_warn_at", DateTime(timezone=True), nullable=False),
    Column("responded_at", DateTime(timezone=True)),
    Column("responded_by", Text),
    Column("workaround_at", DateTime(timezone=True)),
    Column("workaround", Text),
    Column("root_cause_at", DateTime(timezone=True)),
    Column("root_cause", Text),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolved_by", Text),
    Column("resolution", Text),
    Column("verified_at", DateTime(timezone=True)),
    Column("verified_by", Text),
    Column("cancelled_at", DateTime(timezone=True)),
    Column("cancel_reason", Text),
    Column("review", Text),
    Column("review_by", Text),
    Column("review_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(
        "status IN ('open','responded','mitigated','resolved','verified','cancelled')",
        name="status",
    ),
    CheckConstraint("level IN ('critical','major','moderate','minor')", name="level"),
    CheckConstraint("source IN ('manual','alertmanager','platform')", name="source"),
    # One active incident per correlation key: repeats of an alert update it.
    Index(
        "uq_incident_active_correlation",
        "correlation",
        unique=True,
        postgresql_where=text("status NOT IN ('verified','cancelled')"),
    ),
    Index("ix_incident_opened_at", "opened_at"),
    Index("ix_incident_status", "status"),
    Index(
        "ix_incident_title_trgm",
        "title",
        postgresql_using="gin",
        postgresql_ops={"title": "public.gin_trgm_ops"},
    ),
)

incident_event = timeline_table("incident_event", "incident_id", "incident")

EventKind = Literal[
    "opened",
    "signal",
    "responded",
    "workaround",
    "root_cause",
    "resolved",
    "verified",
    "reopened",
    "cancelled",
    "comment",
    "updated",
    "level_changed",
    "assigned",
    "escalated",
    "review",
    "article_linked",
    "article_unlinked",
]
EVENT_ZH = {
    "opened": "登记",
    "signal": "告警更新",
    "responded": "响应",
    "workaround": "临时恢复",
    "root_cause": "根因",
    "resolved": "解决",
    "verified": "验证",
    "reopened": "重新打开",
    "cancelled": "撤销",
    "comment": "备注",
    "updated": "修改",
    "level_changed": "级别调整",
    "assigned": "指派",
    "escalated": "升级提醒",
    "review": "复盘",
    "article_linked": "关联知识",
    "article_unlinked": "取消关联知识",
}

LongText = Annotated[str, Field(min_length=1, max_length=4000)]


class IncidentCreate(BaseModel):
    title: str = Field(min_length=1, max_length=200, description="What is wrong, in one line.")
    description: str = Field("", max_length=8000)
    impact: str = Field("", max_length=4000, description="影响范围: who or what is affected.")
    affected_function: str = Field("", max_length=100, description="受影响功能, e.g. 数据接入")
    level: Level
    hardware: bool = Field(False, description="A hardware fault (the 40-minute rule exempts it).")
    assignee: str | None = Field(None, max_length=128)
    assignee_name: str | None = Field(None, max_length=100)


class IncidentUpdate(BaseModel):
    """Fields to change; a level change needs a reason and restarts nothing: the clocks are
    recomputed from the time the incident was opened."""

    title: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=8000)
    impact: str | None = Field(None, max_length=4000)
    affected_function: str | None = Field(None, max_length=100)
    level: Level | None = None
    hardware: bool | None = None
    assignee: str | None = Field(None, max_length=128)
    assignee_name: str | None = Field(None, max_length=100)
    reason: str | None = Field(None, max_length=1000)


class Note(BaseModel):
    text: LongText


class IncidentRead(BaseModel):
    id: str
    number: str
    title: str
    description: str
    impact: str
    affected_function: str
    level: Level
    level_name: str
    hardware: bool
    status: IncidentStatus
    status_name: str
    source: Source
    correlation: str | None
    opened_at: datetime
    opened_by: str
    opened_by_name: str | None
    assignee: str | None
    assignee_name: str | None
    responded_at: datetime | None
    workaround_at: datetime | None
    workaround: str | None
    root_cause_at: datetime | None
    root_cause: str | None
    resolved_at: datetime | None
    resolution: str | None
    verified_at: datetime | None
    verified_by: str | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    review: str | None
    review_by: str | None
    review_at: datetime | None
    duration_s: float | None = Field(
        description="Opened to resolved (or cancelled); None while not resolved."
    )
    response: ClockState
    resolution_clock: ClockState
    updated_at: datetime


class LinkedArticle(BaseModel):
    id: str
    title: str
    category: str
    linked_by: str
    linked_at: datetime


class IncidentDetail(IncidentRead):
    signals: dict[str, Any] = Field(
        description="Each alert or platform signal feeding the incident and its last state."
    )
    timeline: list[TimelineEntry]
    articles: list[LinkedArticle]
