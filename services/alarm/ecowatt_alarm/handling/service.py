"""The handling workflow: every step changes the alarm's status (or not), writes a row of the
append-only journal and, when the status changes, publishes the change on `alarms` through
the transactional outbox — in the caller's transaction."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ecowatt_kernel.contracts import encode
from ecowatt_kernel.identity import Identity, Role
from ecowatt_kernel.outbox import enqueue
from ecowatt_kernel.problems import NotFound
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_alarm import tables as T
from ecowatt_alarm.handling.models import ATTACHMENT_MAGIC
from ecowatt_alarm.persistence import row_event

__all__ = [
    "act",
    "check_district",
    "read_attachment",
    "role_of",
    "sniff",
    "store_attachment",
]


def role_of(identity: Identity) -> str:
    """The caller's highest role, as the journal records it."""
    for role in (
        Role.ADMIN,
        Role.CITY_SUPERVISOR,
        Role.DISTRICT_OFFICER,
        Role.OM_OPERATOR,
        Role.ENTERPRISE_USER,
    ):
        if role in identity.roles:
            return role.value
    return next(iter(identity.roles)).value if identity.roles else "unknown"


def check_district(*, alarm: Any, identity: Identity) -> None:
    """A district officer handles only the alarms of their own district (else 404)."""
    if identity.has_any_role(Role.ADMIN, Role.CITY_SUPERVISOR):
        return
    if not identity.scope.allows(district=alarm["district_code"]):
        raise NotFound(f"alarm {alarm['id']} not found")


async def act(
    *,
    session: AsyncSession,
    alarm: Any,
    identity: Identity,
    action: str,
    status: str | None,
    text: str | None,
    topic: str,
    data: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> int:
    """One handling step: status and `values` on the alarm, a journal row, the event."""
    values = values or {}
    if status is not None or values:
        upd = dict(values)
        if status is not None:
            upd["status"] = status
        upd["updated_at"] = datetime.now(UTC)
        await session.execute(update(T.alarm).where(T.alarm.c.id == alarm["id"]).values(**upd))
    journal_id = await session.scalar(
        T.journal.insert()
        .values(
            alarm_id=alarm["id"],
            actor=identity.subject,
            actor_role=role_of(identity),
            action=action,
            status_after=status or alarm["status"],
            text=text,
            data=data or {},
        )
        .returning(T.journal.c.id)
    )
    if status is not None:
        await _publish_status(
            session=session, alarm=alarm, status=status, values=values, topic=topic
        )
    return int(journal_id or 0)


async def _publish_status(
    *, session: AsyncSession, alarm: Any, status: str, values: dict[str, Any], topic: str
) -> None:
    row = {**alarm, **values, "status": status}
    event = row_event(
        row,
        change="closed" if status == "closed" else "updated",
        explanation=alarm["explanation"],
        evidence={"handling": {k: str(v) for k, v in values.items()}},
    )
    await enqueue(session, T.outbox, [encode(event, topic=topic)])


def sniff(ctype: str, content: bytes) -> bool:
    """The declared type matches the bytes (magic numbers; text must be UTF-8)."""
    if ctype == "text/plain":
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return b"\x00" not in content
    return any(content.startswith(m) for m in ATTACHMENT_MAGIC.get(ctype, ()))


async def store_attachment(
    *,
    session: AsyncSession,
    alarm_id: str,
    journal_id: int,
    filename: str,
    content_type: str,
    content: bytes,
    uploaded_by: str,
    folder: Path | None,
) -> str:
    """Keep one attachment (in PostgreSQL, or in `folder` when configured); its id."""
    att_id = str(uuid.uuid4())
    path = None
    blob: bytes | None = content
    if folder is not None:
        target = folder / alarm_id
        await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
        path = str(target / att_id)
        await asyncio.to_thread(Path(path).write_bytes, content)
        blob = None
    await session.execute(
        T.attachment.insert().values(
            id=att_id,
            alarm_id=alarm_id,
            journal_id=journal_id,
            filename=filename[:200],
            content_type=content_type,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            content=blob,
            path=path,
            uploaded_by=uploaded_by,
        )
    )
    return att_id


async def read_attachment(
    *, session: AsyncSession, alarm_id: str, attachment_id: str
) -> tuple[bytes, str, str]:
    """(content, content type, id) of an attachment of the alarm, or 404."""
    row = (
        (
            await session.execute(
                select(T.attachment).where(
                    T.attachment.c.id == attachment_id, T.attachment.c.alarm_id == alarm_id
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("attachment not found")
    content = row["content"]
    if content is None:
        content = await asyncio.to_thread(Path(row["path"]).read_bytes)
    return content, row["content_type"], row["id"]
