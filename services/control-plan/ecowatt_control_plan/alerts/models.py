"""Alert orders (预警指令): issue, amend, lift — each a proposal a bureau role approves.

An order has an origin (city 市级 or regional 区域, i.e. from MEE or the province), a level,
an issue time, the time its response takes effect, an expected end, and the districts it
covers (none: the whole city). Its history is a list of *segments*: from a time on, this
level over these districts; an approved amendment appends a segment from its effective time,
an approved lift ends the order. Nothing changes an order until a change is approved.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import (
    BigInteger,
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
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ecowatt_control_plan.database import METADATA
from ecowatt_control_plan.measures.models import Level

Origin = Literal["city", "regional"]
ChangeKind = Literal["issue", "amend", "lift"]
ORIGIN_ZH = {"city": "市级预警", "regional": "区域预警"}
_DISTRICT = re.compile(r"^\d{6}$")

alert_order = Table(
    "alert_order",
    METADATA,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("origin", Text, nullable=False),
    Column("state", Text, nullable=False),  # pending | approved | rejected
    Column("level", Text, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("effective_at", DateTime(timezone=True), nullable=False),
    Column("expected_end", DateTime(timezone=True)),
    Column("lifted_at", DateTime(timezone=True)),
    Column("districts", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("segments", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("notice", Text),
    Column("ramp_min", Integer),
    Column("list_version", Integer),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revision", Integer, nullable=False, server_default=text("0")),
    Index("ix_alert_order_effective", "effective_at"),
)

alert_change = Table(
    "alert_change",
    METADATA,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("alert_id", Text, ForeignKey("alert_order.id"), nullable=False, index=True),
    Column("kind", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("reason", Text),
    Column("proposed_by", Text, nullable=False),
    Column("proposed_at", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False),  # pending | approved | rejected | withdrawn
    Column("decided_by", Text),
    Column("decided_at", DateTime(timezone=True)),
    Column("note", Text),
    Column("before", JSONB),
    Column("after", JSONB),
)


def _districts(value: list[str]) -> list[str]:
    for code in value:
        if not _DISTRICT.match(code):
            raise ValueError(f"{code!r} is not a 6-digit GB/T 2260 code")
    return sorted(set(value))


class AlertIssue(BaseModel):
    """Propose a new order (it takes effect once approved)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="e.g. 西安市重污染天气橙色预警")
    origin: Origin = "city"
    level: Level
    issued_at: AwareDatetime | None = Field(None, description="Default: now")
    effective_at: AwareDatetime = Field(description="When the response takes effect")
    expected_end: AwareDatetime | None = Field(None, description="None: until lifted")
    districts: list[str] = Field(
        default_factory=list, max_length=200, description="GB/T 2260 codes; empty: whole city"
    )
    notice: str | None = Field(None, max_length=5000, description="The notice text")
    ramp_min: int | None = Field(
        None,
        ge=0,
        le=1440,
        description="Time to wind down set by the notice; None: each measure's own (list)",
    )
    reason: str | None = Field(None, max_length=500)

    _check_districts = field_validator("districts")(_districts)

    @model_validator(mode="after")
    def _times(self) -> AlertIssue:
        if self.expected_end is not None and self.expected_end <= self.effective_at:
            raise ValueError("expected_end must be after effective_at")
        return self


class AlertAmend(BaseModel):
    """Propose a change of level, districts or expected end from `effective_at` on."""

    model_config = ConfigDict(extra="forbid")

    level: Level | None = None
    effective_at: AwareDatetime | None = Field(None, description="Default: when approved")
    expected_end: AwareDatetime | None = None
    districts: list[str] | None = Field(None, max_length=200)
    notice: str | None = Field(None, max_length=5000)
    reason: str = Field(min_length=1, max_length=500)

    _check_districts = field_validator("districts")(lambda v: None if v is None else _districts(v))

    @model_validator(mode="after")
    def _something(self) -> AlertAmend:
        if self.level is None and self.expected_end is None and self.districts is None:
            raise ValueError("an amendment changes the level, the districts or the expected end")
        return self


class AlertLift(BaseModel):
    """Propose lifting the order at `lifted_at` (default: when approved)."""

    model_config = ConfigDict(extra="forbid")

    lifted_at: AwareDatetime | None = None
    reason: str = Field(min_length=1, max_length=500)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=500)


class Segment(BaseModel):
    start: datetime = Field(alias="from")
    level: Level
    districts: list[str]

    model_config = ConfigDict(populate_by_name=True)


class ChangeRead(BaseModel):
    id: int
    alert_id: str
    kind: ChangeKind
    payload: dict[str, Any]
    reason: str | None
    proposed_by: str
    proposed_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    note: str | None


class AlertRead(BaseModel):
    id: str
    name: str
    origin: Origin
    state: str
    status: str = Field(
        description="pending_approval, rejected, scheduled, active, ended or lifted (now)"
    )
    level: Level
    issued_at: datetime
    effective_at: datetime
    expected_end: datetime | None
    lifted_at: datetime | None
    districts: list[str]
    segments: list[dict[str, Any]]
    notice: str | None
    ramp_min: int | None
    list_version: int | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    revision: int
    pending_changes: int = 0


class AlertDetail(AlertRead):
    changes: list[ChangeRead]
    task_counts: dict[str, int] = Field(default_factory=dict)
