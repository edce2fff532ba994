"""Control groups (产治关系): many production ↔ many control facilities, with timing rules."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from ecowatt_kernel.contracts import ControlGroupSnapshot
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import CheckConstraint, Date, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from ecowatt_registry.database import Base, Revisioned
from ecowatt_registry.schemas import partial_model


class ControlGroup(Revisioned, Base):
    __tablename__ = "control_group"
    __table_args__ = (
        CheckConstraint("required_mode IN ('all','any')", name="required_mode"),
        CheckConstraint(
            "valid_to IS NULL OR valid_from IS NULL OR valid_to >= valid_from", name="validity"
        ),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    enterprise_id: Mapped[str] = mapped_column(
        Text, ForeignKey("enterprise.id"), nullable=False, index=True
    )
    name: Mapped[str | None] = mapped_column(Text)
    required_mode: Mapped[str] = mapped_column(Text, nullable=False, default="all")
    start_lead_min: Mapped[int] = mapped_column(Integer, nullable=False, default=5)
    stop_lag_min: Mapped[int] = mapped_column(Integer, nullable=False, default=5)
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)


class ControlGroupMember(Base):
    """A facility of a group, on the production or the control side."""

    __tablename__ = "control_group_member"
    __table_args__ = (CheckConstraint("role IN ('production','control')", name="role"),)

    group_id: Mapped[str] = mapped_column(
        Text, ForeignKey("control_group.id", ondelete="CASCADE"), primary_key=True
    )
    facility_id: Mapped[str] = mapped_column(
        Text, ForeignKey("facility.id"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(Text, nullable=False)


class ControlGroupFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enterprise_id: str
    name: str | None = Field(None, max_length=200)
    production_facility_ids: list[str] = Field(min_length=1, max_length=200)
    control_facility_ids: list[str] = Field(min_length=1, max_length=200)
    required_mode: Literal["all", "any"] = Field(
        "all", description="all: every control facility must run; any: one is enough"
    )
    start_lead_min: int = Field(5, ge=0, le=1440, description="Control may start this late")
    stop_lag_min: int = Field(5, ge=0, le=1440, description="Control may stop this early")
    valid_from: date | None = None
    valid_to: date | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ControlGroupFields:
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            raise ValueError("valid_to must not be before valid_from")
        # Partial (PATCH) models inherit this validator: absent lists are None there.
        production = self.production_facility_ids or []
        control = self.control_facility_ids or []
        both = set(production) & set(control)
        if both:
            raise ValueError(f"a facility cannot be on both sides: {', '.join(sorted(both))}")
        if len(set(production)) != len(production) or len(set(control)) != len(control):
            raise ValueError("a facility is listed twice")
        return self


class ControlGroupCreate(ControlGroupFields):
    id: str | None = None
    reason: str | None = Field(None, max_length=500)


class ControlGroupUpdate(partial_model(ControlGroupFields, "ControlGroupPatch")):  # type: ignore[misc]
    reason: str | None = Field(None, max_length=500)


class ControlGroupRead(ControlGroupSnapshot):
    revision: int
    created_at: datetime
    created_by: str | None = None
    updated_by: str | None = None
