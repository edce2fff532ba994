"""Production and control facilities (产污设施 / 治污设施): table and API models."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ecowatt_kernel.contracts import FacilitySnapshot
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from ecowatt_registry.database import Base, Revisioned
from ecowatt_registry.schemas import partial_model

FacilityKind = Literal["production", "control"]
Status = Literal["active", "disabled", "removed"]


class Facility(Revisioned, Base):
    __tablename__ = "facility"
    __table_args__ = (
        CheckConstraint("kind IN ('production','control')", name="kind"),
        CheckConstraint("status IN ('active','disabled','removed')", name="status"),
        Index(
            "uq_facility_enterprise_code",
            "enterprise_id",
            "code",
            unique=True,
            postgresql_where=text("code IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    enterprise_id: Mapped[str] = mapped_column(
        Text, ForeignKey("enterprise.id"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    code: Mapped[str | None] = mapped_column(Text)
    production_line_id: Mapped[str | None] = mapped_column(
        Text, ForeignKey("production_line.id"), index=True
    )
    process: Mapped[str | None] = mapped_column(Text)
    control_type: Mapped[str | None] = mapped_column(Text)
    rated_kw: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(Text, nullable=False, default="active")


class FacilityFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enterprise_id: str
    kind: FacilityKind = Field(description="production (产污) or control (治污)")
    name: str = Field(min_length=1, max_length=200)
    code: str | None = Field(None, max_length=64, description="设施编号 inside the enterprise")
    production_line_id: str | None = None
    process: str | None = Field(None, max_length=200, description="工序/工艺")
    control_type: str | None = Field(
        None, max_length=100, description="Control facilities: e.g. 布袋除尘, 活性炭吸附"
    )
    rated_kw: float | None = Field(None, gt=0, le=1_000_000, description="额定功率 kW")
    status: Status = "active"


class FacilityCreate(FacilityFields):
    id: str | None = None
    reason: str | None = Field(None, max_length=500)


class FacilityUpdate(partial_model(FacilityFields, "FacilityPatch")):  # type: ignore[misc]
    reason: str | None = Field(None, max_length=500)


class FacilityRead(FacilitySnapshot):
    point_count: int = 0
    revision: int
    created_at: datetime
    created_by: str | None = None
    updated_by: str | None = None
