"""The abnormal-event report: figures, the events of the period, the tracking list.

A report covers `[period_start, period_end)`. Its events are the incidents opened in the
period (cancelled ones only counted); the tracking list holds every incident still open at
the period's end (opened before it and neither verified nor cancelled by then), whenever
it was opened; SLA outcomes are judged as of the moment the report is generated. Stored
reports (`ops.abnormal_report`) keep that content unchanged: what was filed stays filed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ecowatt_kernel.times import LocalDateTime
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import Column, DateTime, Index, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from ecowatt_ops.desk.database import metadata

__all__ = [
    "AbnormalReport",
    "LevelFigures",
    "ReportEvent",
    "ReportRequest",
    "ReportSummary",
    "RequestFigures",
    "abnormal_report",
]

ReportKind = Literal["monthly", "on_demand"]
SlaOutcome = Literal["met", "missed", "running", "overdue", "stopped"]
SLA_ZH = {"met": "达标", "missed": "超时", "running": "计时中", "overdue": "已超时", "stopped": "—"}

abnormal_report = Table(
    "abnormal_report",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True), nullable=False),
    Column("title", Text, nullable=False),
    Column("generated_at", DateTime(timezone=True), nullable=False),
    Column("generated_by", Text, nullable=False),
    Column("content", JSONB, nullable=False),
    Index(
        "uq_abnormal_report_monthly",
        "period_start",
        unique=True,
        postgresql_where=text("kind = 'monthly'"),
    ),
    Index("ix_abnormal_report_generated_at", "generated_at"),
)


class ReportEvent(BaseModel):
    """One incident as the report shows it."""

    id: str
    number: str
    title: str
    level: str
    level_name: str
    source_name: str
    affected_function: str
    status_name: str
    opened_at: datetime
    responded_at: datetime | None
    resolved_at: datetime | None
    verified_at: datetime | None
    duration_min: float | None = Field(description="Opened to resolved, in minutes.")
    impact: str
    handling: str = Field(description="Workaround, root cause and resolution, as written.")
    response_sla: SlaOutcome
    resolution_sla: SlaOutcome
    review: str | None


class LevelFigures(BaseModel):
    level: str
    level_name: str
    events: int
    response_met: int
    response_missed: int
    resolution_met: int
    resolution_missed: int
    duration_min: float = Field(description="Sum of opened → resolved of resolved events.")


class RequestFigures(BaseModel):
    kind: str
    kind_name: str
    received: int
    met: int
    missed: int
    running: int
    open_at_end: int


class Figures(BaseModel):
    events: int = Field(description="Incidents opened in the period (not cancelled).")
    cancelled: int
    resolved: int
    response_met: int
    response_missed: int
    resolution_met: int
    resolution_missed: int
    response_rate: float | None = Field(description="met / (met + missed); None without any.")
    resolution_rate: float | None
    duration_min: float = Field(description="Total opened → resolved of resolved events.")
    mean_duration_min: float | None
    open_at_end: int = Field(description="Incidents on the tracking list.")
    by_level: list[LevelFigures]
    by_source: dict[str, int]
    by_function: dict[str, int]


class AbnormalReport(BaseModel):
    kind: ReportKind
    title: str
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    generated_by: str
    figures: Figures
    events: list[ReportEvent]
    tracking: list[ReportEvent]
    requests: list[RequestFigures]


class ReportSummary(BaseModel):
    id: str
    kind: ReportKind
    title: str
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    generated_by: str
    events: int
    open_at_end: int


class ReportRequest(BaseModel):
    """A period: a calendar month (`2026-11`) or from/to (local time without an offset)."""

    month: str | None = Field(None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    period_from: LocalDateTime | None = Field(None, alias="from")
    period_to: LocalDateTime | None = Field(None, alias="to")

    @model_validator(mode="after")
    def _one_period(self) -> ReportRequest:
        if (self.month is None) == (self.period_from is None or self.period_to is None):
            raise ValueError("give either month, or both from and to")
        if self.period_from and self.period_to and self.period_to <= self.period_from:
            raise ValueError("to must be after from")
        return self
