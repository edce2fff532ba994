"""The metadata every desk table is declared on (the `ops` schema)."""

from __future__ import annotations

from sqlalchemy import MetaData

__all__ = ["SCHEMA", "metadata"]

SCHEMA = "ops"
metadata = MetaData(schema=SCHEMA)
