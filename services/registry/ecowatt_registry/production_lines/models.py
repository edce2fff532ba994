"""Production lines (生产线): table and API models."""

from __future__ import annotations

from datetime import datetime

from ecowatt_kernel.contracts import ProductionLineSnapshot
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column

from ecowatt_registry.database import Base, Revisioned
from ecowatt_registry.schemas import partial_model


class ProductionLine(Revisioned, Base):
    __tablename__ = "production_line"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    enterprise_id: Mapped[str] = mapped_column(
        Text, ForeignKey("enterprise.id"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(Text, nullable=False)
    process: Mapped[str | None] = mapped_column(Text)


class ProductionLineFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enterprise_id: str
    name: str = Field(min_length=1, max_length=200)
    process: str | None = Field(None, max_length=200, description="工艺名称")


class ProductionLineCreate(ProductionLineFields):
    id: str | None = None
    reason: str | None = Field(None, max_length=500)


class ProductionLineUpdate(partial_model(ProductionLineFields, "ProductionLinePatch")):  # type: ignore[misc]
    reason: str | None = Field(None, max_length=500)


class ProductionLineRead(ProductionLineSnapshot):
    revision: int
    created_at: datetime
    created_by: str | None = None
    updated_by: str | None = None
