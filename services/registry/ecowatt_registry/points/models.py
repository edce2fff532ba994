"""Monitoring points (监测点位): table and API models."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ecowatt_kernel.contracts import PointSnapshot
from ecowatt_kernel.times import LocalDateTime
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ecowatt_registry.database import Base, Revisioned
from ecowatt_registry.schemas import partial_model

PointType = Literal["total", "production", "control", "indirect", "combined"]
POINT_TYPES: tuple[str, ...] = ("total", "production", "control", "indirect", "combined")


class Point(Revisioned, Base):
    __tablename__ = "point"
    __table_args__ = (
        CheckConstraint(
            "point_type IN ('total','production','control','indirect','combined')",
            name="point_type",
        ),
        CheckConstraint("status IN ('active','disabled','removed')", name="status"),
        CheckConstraint("circuit BETWEEN 1 AND 99", name="circuit"),
        # One active point per device circuit.
        Index(
            "uq_point_device_circuit",
            "device_mn",
            "circuit",
            unique=True,
            postgresql_where=text("device_mn IS NOT NULL AND status <> 'removed'"),
        ),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    enterprise_id: Mapped[str] = mapped_column(
        Text, ForeignKey("enterprise.id"), nullable=False, index=True
    )
    facility_id: Mapped[str | None] = mapped_column(Text, ForeignKey("facility.id"), index=True)
    point_type: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    is_key: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    device_mn: Mapped[str | None] = mapped_column(Text, ForeignKey("device.mn"), index=True)
    circuit: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    ct_ratio: Mapped[float] = mapped_column(Float, nullable=False, default=1.0)
    pt_ratio: Mapped[float] = mapped_column(Float, nullable=False, default=1.0)
    rated_kw: Mapped[float | None] = mapped_column(Float)
    max_load_kw: Mapped[float | None] = mapped_column(Float)
    start_stop_kw: Mapped[float | None] = mapped_column(Float)
    low_load_kw: Mapped[float | None] = mapped_column(Float)
    commissioned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(Text, nullable=False, default="active")
    expected_interval_s: Mapped[int] = mapped_column(Integer, nullable=False, default=60)


class PointFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enterprise_id: str
    facility_id: str | None = Field(None, description="None for the enterprise total line")
    point_type: PointType = Field(
        description="total 总电, production 产污, control 治污, indirect 间接, combined 产治一体"
    )
    name: str = Field(min_length=1, max_length=200)
    is_key: bool = Field(True, description="A control facility runs only if its key points run")
    device_mn: str | None = None
    circuit: int = Field(1, ge=1, le=99, description="Circuit on the device (HJ 212 suffix 01-99)")
    ct_ratio: float = Field(1.0, gt=0, le=100_000)
    pt_ratio: float = Field(1.0, gt=0, le=100_000)
    rated_kw: float | None = Field(None, gt=0, le=1_000_000, description="额定功率")
    max_load_kw: float | None = Field(None, gt=0, le=1_000_000, description="最大负荷")
    start_stop_kw: float | None = Field(None, ge=0, le=1_000_000, description="启停阈值")
    low_load_kw: float | None = Field(None, ge=0, le=1_000_000, description="低负荷阈值")
    commissioned_at: LocalDateTime | None = Field(
        None, description="联网时间 (seconds kept; without an offset: local time)"
    )
    status: Literal["active", "disabled", "removed"] = "active"
    expected_interval_s: int = Field(60, ge=1, le=86_400)

    @field_validator("commissioned_at")
    @classmethod
    def _whole_seconds(cls, value: datetime | None) -> datetime | None:
        # Excel keeps times to the second: a round trip must not change the value.
        return value.replace(microsecond=0) if value is not None else None

    @model_validator(mode="after")
    def _thresholds(self) -> PointFields:
        for problem in threshold_problems(
            point_type=self.point_type,
            facility_id=self.facility_id,
            max_load_kw=self.max_load_kw,
            start_stop_kw=self.start_stop_kw,
            low_load_kw=self.low_load_kw,
        ):
            raise ValueError(problem[1])
        return self


def threshold_problems(
    *,
    point_type: str,
    facility_id: str | None,
    max_load_kw: float | None,
    start_stop_kw: float | None,
    low_load_kw: float | None,
) -> list[tuple[str, str]]:
    """(field, reason) for each inconsistency between a point's type and thresholds."""
    problems: list[tuple[str, str]] = []
    if point_type == "total" and facility_id is not None:
        problems.append(("facility_id", "a total-line point (总电) has no facility"))
    if point_type in ("production", "control", "combined") and facility_id is None:
        problems.append(("facility_id", f"a {point_type} point needs its facility"))
    if start_stop_kw is not None and max_load_kw is not None and start_stop_kw > max_load_kw:
        problems.append(("start_stop_kw", "the start/stop threshold exceeds the maximum load"))
    if low_load_kw is not None and start_stop_kw is not None and low_load_kw <= start_stop_kw:
        problems.append(
            ("low_load_kw", "the low-load threshold must exceed the start/stop threshold")
        )
    if low_load_kw is not None and max_load_kw is not None and low_load_kw > max_load_kw:
        problems.append(("low_load_kw", "the low-load threshold exceeds the maximum load"))
    return problems


class PointCreate(PointFields):
    id: str | None = None
    reason: str | None = Field(None, max_length=500)


class PointUpdate(partial_model(PointFields, "PointPatch")):  # type: ignore[misc]
    reason: str | None = Field(None, max_length=500)


class PointRead(PointSnapshot):
    revision: int
    created_at: datetime
    created_by: str | None = None
    updated_by: str | None = None
