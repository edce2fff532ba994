"""Per-enterprise tasks (管控任务): the measures an enterprise must carry out, for how long.

A task is one stretch of time over which one order governs an enterprise at one level (the
highest level of the orders covering its district); raising or lowering the level ends the
task at that moment and starts the next. Every change is published on `control.tasks` and
kept in `task_history`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Column, DateTime, Index, Integer, PrimaryKeyConstraint, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

from ecowatt_control_plan.database import METADATA

task = Table(
    "task",
    METADATA,
    Column("task_id", Text, primary_key=True),
    Column("alert_id", Text, nullable=False, index=True),
    Column("enterprise_id", Text, nullable=False),
    Column("enterprise_name", Text),
    Column("district_code", Text, nullable=False),
    Column("industry_code", Text),
    Column("industry_name", Text),
    Column("performance_grade", Text),
    Column("level", Text, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_to", DateTime(timezone=True)),
    Column("measures", JSONB, nullable=False),
    Column("list_version", Integer),
    Column("revision", Integer, nullable=False),
    Column("change", Text, nullable=False),  # the last change: issued | changed | ended
    Column("reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_task_enterprise", "enterprise_id", "valid_from"),
    Index("ix_task_period", "valid_from", "valid_to"),
)

task_history = Table(
    "task_history",
    METADATA,
    Column("task_id", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("change", Text, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_to", DateTime(timezone=True)),
    Column("level", Text, nullable=False),
    Column("measures", JSONB, nullable=False),
    Column("reason", Text),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("task_id", "revision"),
)


class TaskRead(BaseModel):
    task_id: str
    alert_id: str
    enterprise_id: str
    enterprise_name: str | None
    district_code: str
    industry_code: str | None
    industry_name: str | None
    performance_grade: str | None
    level: str
    valid_from: datetime
    valid_to: datetime | None
    measures: list[dict[str, Any]]
    list_version: int | None
    revision: int
    change: str
    reason: str | None
    created_at: datetime
    updated_at: datetime


class TaskHistoryRead(BaseModel):
    revision: int
    change: str
    valid_from: datetime
    valid_to: datetime | None
    level: str
    measures: list[dict[str, Any]]
    reason: str | None
    at: datetime


class TaskDetail(TaskRead):
    history: list[TaskHistoryRead]
