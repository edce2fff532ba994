"""The audit log table and its API models.

Each row carries `hash = SHA-256(prev_hash ‖ canonical row)`, the previous row's hash
included, so changing, inserting or removing a row anywhere breaks every later hash; a
trigger refuses UPDATE, DELETE and TRUNCATE, so tampering needs a superuser who disables
it — and `GET /audit/verify` then finds the first row that no longer fits.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import BigInteger, Column, DateTime, Index, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB, UUID

from ecowatt_auth.database import metadata

GENESIS = "0" * 64

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("actor_kind", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("resource", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("source_ip", Text),
    Column("details", JSONB, nullable=False),
    Column("trace_id", Text),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_actor_at", "actor", "at"),
    Index("ix_audit_log_action_at", "action", "at"),
)

HASHED_FIELDS = (
    "seq",
    "event_id",
    "at",
    "actor",
    "actor_kind",
    "action",
    "resource",
    "outcome",
    "source_ip",
    "details",
    "trace_id",
)


def canonical(row: dict[str, Any]) -> bytes:
    """The bytes a row's hash covers: its fields as sorted, compact JSON (times in UTC ISO
    with microseconds, as PostgreSQL keeps them)."""
    values: dict[str, Any] = {}
    for name in HASHED_FIELDS:
        value = row[name]
        if isinstance(value, datetime):
            value = value.isoformat(timespec="microseconds")
        values[name] = None if value is None else value if name != "event_id" else str(value)
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, row: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(row)).hexdigest()


class AuditRecord(BaseModel):
    seq: int
    event_id: str
    at: datetime
    actor: str
    actor_kind: str
    action: str
    resource: str
    outcome: Literal["success", "denied", "failed"]
    source_ip: str | None
    details: dict[str, Any]
    trace_id: str | None
    recorded_at: datetime
    hash: str


class ChainCheck(BaseModel):
    ok: bool
    checked: int
    first_seq: int | None
    last_seq: int | None
    head_hash: str | None
    broken_at: int | None = None
    reason: str | None = None
