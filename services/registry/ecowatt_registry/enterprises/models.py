"""Enterprise (企业档案): table, grade history, request and response models."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from ecowatt_kernel.contracts import EnterpriseSnapshot
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from ecowatt_registry import validation
from ecowatt_registry.database import Base, Revisioned
from ecowatt_registry.schemas import partial_model

Grade = Literal["A", "B", "C", "D", "leading", "none"]
ProductionStatus = Literal["normal", "suspended", "closed"]


class Enterprise(Revisioned, Base):
    __tablename__ = "enterprise"
    __table_args__ = (
        Index(
            "uq_enterprise_credit_code",
            "credit_code",
            unique=True,
            postgresql_where=text("credit_code IS NOT NULL"),
        ),
        CheckConstraint(
            "performance_grade IN ('A','B','C','D','leading','none')", name="performance_grade"
        ),
        CheckConstraint(
            "production_status IN ('normal','suspended','closed')", name="production_status"
        ),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False, index=True)
    credit_code: Mapped[str | None] = mapped_column(Text)
    district_code: Mapped[str] = mapped_column(Text, nullable=False, index=True)
    zone: Mapped[str | None] = mapped_column(Text, index=True)
    town: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    longitude: Mapped[float | None] = mapped_column(Float)
    latitude: Mapped[float | None] = mapped_column(Float)
    industry_code: Mapped[str | None] = mapped_column(Text, index=True)
    key_industry: Mapped[str | None] = mapped_column(Text)
    performance_grade: Mapped[str] = mapped_column(Text, nullable=False, default="none")
    performance_grade_since: Mapped[date | None] = mapped_column(Date)
    control_type: Mapped[str | None] = mapped_column(Text)
    exempt: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    production_status: Mapped[str] = mapped_column(Text, nullable=False, default="normal")
    om_company: Mapped[str | None] = mapped_column(Text)
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, default=list)


class GradeRecord(Base):
    """One period of an enterprise's performance grade (绩效分级), with who set it and why."""

    __tablename__ = "enterprise_grade"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    enterprise_id: Mapped[str] = mapped_column(
        Text, ForeignKey("enterprise.id", ondelete="CASCADE"), nullable=False, index=True
    )
    grade: Mapped[str] = mapped_column(Text, nullable=False)
    valid_from: Mapped[date] = mapped_column(Date, nullable=False)
    valid_to: Mapped[date | None] = mapped_column(Date)
    actor: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


# ------------------------------------------------------------------------------- API models


class ContactIn(BaseModel):
    """A person to notify."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=50)
    phone: str | None = Field(None, max_length=30, pattern=r"^[0-9+\-() ]{3,30}$")
    role: str | None = Field(None, max_length=30)
    notify: bool = True


class EnterpriseFields(BaseModel):
    """Writable fields of an enterprise, each validated."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="企业名称")
    credit_code: str | None = Field(
        None, description="统一社会信用代码 (GB 32100, check character verified); unique"
    )
    district_code: str = Field(description="GB/T 2260 county-level code of Shaanxi, e.g. 610113")
    zone: str | None = Field(
        None, description="Management zone code, e.g. XA-GX (see /reference/zones)"
    )
    town: str | None = Field(None, max_length=100, description="街乡镇")
    address: str | None = Field(None, max_length=300)
    longitude: float | None = Field(None, ge=-180, le=180, description="WGS-84")
    latitude: float | None = Field(None, ge=-90, le=90, description="WGS-84")
    industry_code: str | None = Field(
        None, description="GB/T 4754-2017 code; the 4-digit class (小类) is expected"
    )
    key_industry: str | None = Field(None, max_length=50, description="重点行业类型 (绩效分级)")
    performance_grade: Grade = "none"
    performance_grade_since: date | None = Field(None, description="Date the grade took effect")
    control_type: str | None = Field(None, max_length=50, description="管控类型")
    exempt: bool = Field(False, description="保障类/豁免")
    production_status: ProductionStatus = "normal"
    om_company: str | None = Field(None, max_length=200, description="运维单位")
    contacts: list[ContactIn] = Field(default_factory=list, max_length=20)

    @field_validator("credit_code")
    @classmethod
    def _credit_code(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        problem = validation.credit_code_problem(value)
        if problem:
            raise ValueError(f"invalid unified social credit code: {problem}")
        return value

    @field_validator("district_code")
    @classmethod
    def _district(cls, value: str | None) -> str | None:
        if value is not None and (problem := validation.district_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and (problem := validation.zone_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("industry_code")
    @classmethod
    def _industry(cls, value: str | None) -> str | None:
        if value is not None and (problem := validation.industry_problem(value)):
            raise ValueError(problem)
        return value


class EnterpriseCreate(EnterpriseFields):
    id: str | None = Field(None, description="Chosen id; generated when absent")
    reason: str | None = Field(None, max_length=500, description="Why (kept in the history)")


EnterprisePatch = partial_model(EnterpriseFields, "EnterprisePatch")


class EnterpriseUpdate(EnterprisePatch):  # type: ignore[misc,valid-type]
    reason: str | None = Field(None, max_length=500, description="Why (kept in the history)")


class EnterpriseRead(EnterpriseSnapshot):
    """An enterprise with its derived fields and bookkeeping."""

    credit_code_valid: bool = Field(description="The code is present and passes GB 32100")
    zone_name: str | None = None
    industry_level: str | None = Field(None, description="section/division/group/class")
    industry_group: str | None = None
    production_facility_count: int = 0
    control_facility_count: int = 0
    point_count: int = 0
    device_count: int = 0
    revision: int
    created_at: datetime
    created_by: str | None = None
    updated_by: str | None = None


class GradeRead(BaseModel):
    grade: Grade
    valid_from: date
    valid_to: date | None
    actor: str | None
    reason: str | None
    recorded_at: datetime
