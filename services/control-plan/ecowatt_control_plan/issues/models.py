"""Supervision issues (督办问题): a non-compliance handed to the enterprise's district.

An issue opens on the first judged hour an enterprise violates its task (status 未开启治污设备,
未响应停产 or 未响应减产) and collects every further violating hour of the same task and
kind, with the evidence (baseline against actual, per target). It is dispatched to the
enterprise's district at once; the enterprise (or the district) gives feedback, the district
verifies, and only a verified issue can be closed (销号). The journal is append-only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

from ecowatt_control_plan.database import METADATA

IssueState = Literal["open", "feedback", "verified", "closed"]
VerifyResult = Literal["confirmed", "rectified", "equipment_fault", "false_positive"]
VERIFY_ZH = {
    "confirmed": "属实",
    "rectified": "已整改",
    "equipment_fault": "监测设备故障",
    "false_positive": "误判",
}
STATE_ZH = {"open": "待反馈", "feedback": "已反馈", "verified": "已核查", "closed": "已销号"}
MAX_EVIDENCE_HOURS = 48

issue = Table(
    "issue",
    METADATA,
    Column("id", Text, primary_key=True),
    Column("enterprise_id", Text, nullable=False),
    Column("enterprise_name", Text),
    Column("district_code", Text, nullable=False),
    Column("task_id", Text, nullable=False),
    Column("alert_id", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("first_hour", DateTime(timezone=True), nullable=False),
    Column("last_hour", DateTime(timezone=True), nullable=False),
    Column("hours", Integer, nullable=False),
    Column("evidence", JSONB, nullable=False),
    Column("verification", Text),
    Column("verified_by", Text),
    Column("verified_at", DateTime(timezone=True)),
    Column("closed_by", Text),
    Column("closed_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_issue_task", "task_id", "category"),
    Index("ix_issue_district", "district_code", "state"),
)

journal = Table(
    "issue_journal",
    METADATA,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("issue_id", Text, nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text, nullable=False),
    Column("role", Text),
    Column("action", Text, nullable=False),
    Column("text", Text),
    Column("details", JSONB, nullable=False),
)


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=2000, description="What happened, what was done")
    cause: Literal["production_need", "equipment_fault", "data_error", "other"] = "other"


class Verification(BaseModel):
    model_config = ConfigDict(extra="forbid")

    result: VerifyResult
    note: str | None = Field(None, max_length=2000)


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=2000)


class JournalRead(BaseModel):
    at: datetime
    actor: str
    role: str | None
    action: str
    text: str | None
    details: dict[str, Any]


class IssueRead(BaseModel):
    id: str
    enterprise_id: str
    enterprise_name: str | None
    district_code: str
    task_id: str
    alert_id: str
    category: str
    state: IssueState
    opened_at: datetime
    first_hour: datetime
    last_hour: datetime
    hours: int
    verification: str | None
    verified_by: str | None
    verified_at: datetime | None
    closed_by: str | None
    closed_at: datetime | None


class IssueDetail(IssueRead):
    evidence: dict[str, Any]
    journal: list[JournalRead]
