"""The registry's SQLAlchemy base, shared columns, the outbox table and the meta table."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from ecowatt_kernel.outbox import outbox_table
from sqlalchemy import DateTime, Integer, MetaData, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "registry"


class Base(DeclarativeBase):
    metadata = MetaData(
        schema=SCHEMA,
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        },
    )

    if TYPE_CHECKING:
        # Every model here is declared with `__tablename__`, so it is mapped to a `Table`
        # (SQLAlchemy types `__table__` as any `FromClause`, which has no insert/update).
        __table__: ClassVar[Table]


class Revisioned:
    """Columns every archive entity has: its revision and who changed it when."""

    revision: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_by: Mapped[str | None] = mapped_column(Text)
    updated_by: Mapped[str | None] = mapped_column(Text)


class Meta(Base):
    """Facts about the archive itself, e.g. the seed of the synthetic city."""

    __tablename__ = "registry_meta"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Tombstone(Base):
    """The last revision of a deleted entity: a re-created one continues after it, so that
    consumers that keep the highest revision per entity do not ignore it."""

    __tablename__ = "tombstone"

    entity: Mapped[str] = mapped_column(Text, primary_key=True)
    entity_id: Mapped[str] = mapped_column(Text, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


OUTBOX = outbox_table(Base.metadata)
