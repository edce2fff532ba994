"""History of threshold and association changes (who, when, why, old and new values)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import BigInteger, DateTime, Index, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from ecowatt_registry.database import Base


class HistoryRecord(Base):
    __tablename__ = "change_history"
    __table_args__ = (
        Index("ix_change_history_entity", "entity", "entity_id"),
        Index("ix_change_history_enterprise", "enterprise_id", "changed_at"),
        # Newest first, the default order of the history list.
        Index("ix_change_history_changed_at", "changed_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(Text, nullable=False)
    entity_id: Mapped[str] = mapped_column(Text, nullable=False)
    enterprise_id: Mapped[str | None] = mapped_column(Text)
    operation: Mapped[str] = mapped_column(Text, nullable=False)
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    actor: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class HistoryRead(BaseModel):
    id: int
    entity: str
    entity_id: str
    enterprise_id: str | None
    operation: Literal["create", "update", "delete"]
    changes: dict[str, dict[str, Any]]
    actor: str | None
    reason: str | None
    changed_at: datetime
