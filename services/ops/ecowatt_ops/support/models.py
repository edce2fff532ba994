"""Support-request tables and API models.

Status: submitted → accepted (an O&M engineer took it) → answered (a question got its answer)
→ resolved (done) → closed (the requester confirmed, or O&M closed it); rejected (not the
supplier's to do, with the reason) and withdrawn (by the requester) end it early. The clock
(see `clocks.models`) stops at the answer for a question and at the resolution for the other
kinds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from ecowatt_kernel.times import LocalDateTime
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
    text,
)

from ecowatt_ops.clocks.models import ClockState, RequestKind
from ecowatt_ops.desk.database import metadata
from ecowatt_ops.desk.timeline import TimelineEntry, timeline_table

__all__ = [
    "OPEN_STATUSES",
    "REQUEST_STATUS_ZH",
    "RequestCreate",
    "RequestDetail",
    "RequestRead",
    "RequestStatus",
    "request_event",
    "request_number",
    "support_request",
]

RequestStatus = Literal[
    "submitted", "accepted", "answered", "resolved", "closed", "rejected", "withdrawn"
]
REQUEST_STATUS_ZH = {
    "submitted": "待受理",
    "accepted": "处理中",
    "answered": "已答复",
    "resolved": "已完成",
    "closed": "已关闭",
    "rejected": "已驳回",
    "withdrawn": "已撤回",
}
OPEN_STATUSES = ("submitted", "accepted", "answered")
"""Not yet resolved, closed, rejected or withdrawn."""
CLOCK_RUNNING = ("submitted", "accepted")
"""While a request is in one of these its clock runs (a question's stops at the answer)."""

request_number = Sequence("request_number_seq", metadata=metadata)

support_request = Table(
    "support_request",
    metadata,
    Column("id", Text, primary_key=True),
    Column("number", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("enterprise_id", Text),
    Column("district_code", Text),
    Column("status", Text, nullable=False, server_default="submitted"),
    Column("requester", Text, nullable=False),
    Column("requester_name", Text),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("assignee", Text),
    Column("assignee_name", Text),
    Column("accepted_at", DateTime(timezone=True)),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("warn_at", DateTime(timezone=True), nullable=False),
    Column("calendar_estimated", Boolean, nullable=False, server_default=text("false")),
    Column("answered_at", DateTime(timezone=True)),
    Column("answer", Text),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolution", Text),
    Column("closed_at", DateTime(timezone=True)),
    Column("sla_stopped_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(
        "status IN ('submitted','accepted','answered','resolved','closed','rejected','withdrawn')",
        name="status",
    ),
    CheckConstraint("kind IN ('question','data_correction','account','other')", name="kind"),
    Index("ix_support_request_received_at", "received_at"),
    Index("ix_support_request_enterprise", "enterprise_id"),
    Index("ix_support_request_district", "district_code"),
    Index(
        "ix_support_request_title_trgm",
        "title",
        postgresql_using="gin",
        postgresql_ops={"title": "public.gin_trgm_ops"},
    ),
)

request_event = timeline_table("request_event", "request_id", "support_request")

REQUEST_EVENT_ZH = {
    "submitted": "提交",
    "accepted": "受理",
    "answered": "答复",
    "resolved": "完成",
    "closed": "关闭",
    "reopened": "重新打开",
    "rejected": "驳回",
    "withdrawn": "撤回",
    "comment": "留言",
    "escalated": "升级提醒",
    "deadline_changed": "时限调整",
    "article_linked": "关联知识",
    "article_unlinked": "取消关联知识",
}

LongText = Annotated[str, Field(min_length=1, max_length=4000)]


class RequestCreate(BaseModel):
    kind: RequestKind = Field(
        description="question 操作问题解答, data_correction 数据修改 (archives or thresholds), "
        "account 账号申请, other 其他"
    )
    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=8000)
    enterprise_id: str | None = Field(
        None, max_length=128, description="The enterprise concerned (enterprise users: theirs)."
    )
    district_code: str | None = Field(None, pattern=r"^\d{6}$")
    received_at: LocalDateTime | None = Field(
        None,
        description="When the request reached the supplier, for one taken by phone (not in "
        "the future); default now.",
    )


class Reply(BaseModel):
    text: LongText


class Accept(BaseModel):
    assignee: str | None = Field(None, max_length=128, description="Default: the caller.")
    assignee_name: str | None = Field(None, max_length=100)


class RequestRead(BaseModel):
    id: str
    number: str
    kind: RequestKind
    kind_name: str
    title: str
    description: str
    enterprise_id: str | None
    district_code: str | None
    status: RequestStatus
    status_name: str
    requester: str
    requester_name: str | None
    received_at: datetime
    assignee: str | None
    assignee_name: str | None
    accepted_at: datetime | None
    answered_at: datetime | None
    answer: str | None
    resolved_at: datetime | None
    resolution: str | None
    closed_at: datetime | None
    sla: str = Field(description="The kind's service level, e.g. 2 个工作日内完成.")
    clock: ClockState
    calendar_estimated: bool = Field(
        description="The deadline crossed a year the official calendar does not know yet "
        "(counted Monday–Friday)."
    )
    updated_at: datetime


class LinkedArticleRef(BaseModel):
    id: str
    title: str
    category: str
    linked_at: datetime


class RequestDetail(RequestRead):
    timeline: list[TimelineEntry]
    articles: list[LinkedArticleRef]
