"""Appending to the audit chain, checking it, searching it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ecowatt_kernel.bus import Record
from ecowatt_kernel.contracts import AuditEvent, ContractError, decode
from sqlalchemy import Select, Text, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_auth.audit.models import GENESIS, ChainCheck, audit_log, chain_hash

__all__ = ["append", "decode_audit", "search_query", "verify_chain"]

# One writer at a time extends the chain (replicas of the auth service queue here).
_CHAIN_LOCK = int.from_bytes(
    hashlib.sha256(b"auth.audit_log chain").digest()[:8], "big", signed=True
)


def decode_audit(records: Sequence[Record]) -> list[tuple[str, str, AuditEvent]]:
    """(event id, trace id, event) of the audit events among `records`; others are skipped
    (a foreign message on the topic must not stop the log)."""
    out = []
    for record in records:
        try:
            envelope = decode(record)
        except ContractError:
            continue
        if isinstance(envelope.data, AuditEvent):
            out.append((str(envelope.id), envelope.trace_id, envelope.data))
    return out


def _normalised(details: dict[str, Any]) -> dict[str, Any]:
    # As JSONB will give it back (so the hash computed now verifies later).
    loaded: dict[str, Any] = json.loads(json.dumps(details, default=str))
    return loaded


async def append(session: AsyncSession, events: Sequence[tuple[str, str, AuditEvent]]) -> int:
    """Add events not stored yet to the end of the chain (inside the caller's transaction);
    returns how many were added. Redelivered events are recognised by their id."""
    if not events:
        return 0
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
    ids = [event_id for event_id, _, _ in events]
    known = {
        str(v)
        for v in await session.scalars(
            select(audit_log.c.event_id).where(audit_log.c.event_id.in_(ids))
        )
    }
    last = (
        await session.execute(
            select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        )
    ).first()
    seq, prev = (last[0], last[1]) if last else (0, GENESIS)
    rows = []
    for event_id, trace_id, event in events:
        if event_id in known:
            continue
        known.add(event_id)
        seq += 1
        row: dict[str, Any] = {
            "seq": seq,
            "event_id": event_id,
            "at": event.at.astimezone(UTC),
            "actor": event.actor,
            "actor_kind": event.actor_kind,
            "action": event.action,
            "resource": event.resource,
            "outcome": event.outcome,
            "source_ip": event.source_ip,
            "details": _normalised(event.details),
            "trace_id": trace_id,
            "prev_hash": prev,
        }
        row["hash"] = prev = chain_hash(prev, row)
        rows.append(row)
    if rows:
        await session.execute(audit_log.insert(), rows)
    return len(rows)


async def verify_chain(
    session: AsyncSession, *, batch: int = 5000, limit: int | None = None
) -> ChainCheck:
    """Recompute every hash from the first row on; report the first row that does not fit
    (changed, inserted or removed rows)."""
    checked = 0
    prev = None
    expected_seq = None
    first_seq = last_seq = None
    after = 0
    while True:
        rows = (
            (
                await session.execute(
                    select(audit_log)
                    .where(audit_log.c.seq > after)
                    .order_by(audit_log.c.seq)
                    .limit(batch)
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            break
        for row in rows:
            data = dict(row)
            if first_seq is None:
                first_seq = data["seq"]
                prev = data["prev_hash"] if data["seq"] != 1 else GENESIS
                if data["seq"] == 1 and data["prev_hash"] != GENESIS:
                    return _broken(
                        checked, first_seq, data, "the first row does not start the chain"
                    )
            elif data["seq"] != expected_seq:
                return _broken(checked, first_seq, data, f"row {expected_seq} is missing")
            if data["prev_hash"] != prev:
                return _broken(checked, first_seq, data, "the row does not follow the previous one")
            if chain_hash(prev or GENESIS, data) != data["hash"]:
                return _broken(
                    checked, first_seq, data, "the row's content does not match its hash"
                )
            prev = data["hash"]
            expected_seq = data["seq"] + 1
            last_seq = data["seq"]
            checked += 1
            if limit is not None and checked >= limit:
                return ChainCheck(
                    ok=True, checked=checked, first_seq=first_seq, last_seq=last_seq, head_hash=prev
                )
        after = rows[-1]["seq"]
    return ChainCheck(
        ok=True, checked=checked, first_seq=first_seq, last_seq=last_seq, head_hash=prev
    )


def _broken(checked: int, first_seq: int | None, row: Any, reason: str) -> ChainCheck:
    return ChainCheck(
        ok=False,
        checked=checked,
        first_seq=first_seq,
        last_seq=None,
        head_hash=None,
        broken_at=row["seq"],
        reason=reason,
    )


def search_query(
    *,
    actor: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    resource: str | None = None,
    source_ip: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    q: str | None = None,
) -> Select[Any]:
    """Audit rows matching the filters, newest first. `action` and `resource` match a
    prefix; `q` searches the details text."""
    query = select(audit_log)
    c = audit_log.c
    if actor:
        query = query.where(c.actor == actor)
    if action:
        query = query.where(c.action.startswith(action, autoescape=True))
    if outcome:
        query = query.where(c.outcome == outcome)
    if resource:
        query = query.where(c.resource.startswith(resource, autoescape=True))
    if source_ip:
        query = query.where(c.source_ip == source_ip)
    if since:
        query = query.where(c.at >= since)
    if until:
        query = query.where(c.at < until)
    if q:
        query = query.where(c.details.cast(Text).contains(q, autoescape=True))
    return query.order_by(c.seq.desc())
