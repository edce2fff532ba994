"""Writing the archive: every create, update and delete goes through `ArchiveWriter`.

One path for the API, the Excel import and the synthetic city, so that all three behave the
same: a state equal to the stored one changes nothing (no revision, no event, no history —
this is what makes a re-import idempotent); a real change bumps the entity's revision,
records threshold and association changes in the history, and writes the entity's full
snapshot to the outbox in the same transaction (the relay publishes it on
`registry.changes` after the commit).

Why one module of ~610 lines: the entity kinds (`Kind`: table, columns, snapshot) and the
writer that compares, versions, records history and enqueues snapshots for every kind are
one path by design (see above); a third of the length is the kinds' column tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from ecowatt_kernel.contracts import (
    ControlGroupSnapshot,
    DeviceSnapshot,
    EnterpriseSnapshot,
    FacilitySnapshot,
    PointSnapshot,
    ProductionLineSnapshot,
    RegistryChange,
    encode,
)
from ecowatt_kernel.contracts.registry import Snapshot
from ecowatt_kernel.outbox import enqueue
from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_registry.control_groups.models import ControlGroup, ControlGroupMember
from ecowatt_registry.database import OUTBOX, Tombstone
from ecowatt_registry.devices.models import Device
from ecowatt_registry.enterprises.models import Enterprise, GradeRecord
from ecowatt_registry.facilities.models import Facility
from ecowatt_registry.history.models import HistoryRecord
from ecowatt_registry.points.models import Point
from ecowatt_registry.production_lines.models import ProductionLine
from ecowatt_registry.reference import tables

# Mutations hold this advisory lock shared, a full re-publish holds it exclusively: a
# re-publish then never interleaves an older snapshot after a newer one on the bus.
ARCHIVE_LOCK = int.from_bytes(hashlib.sha256(b"registry:archive").digest()[:8], "big", signed=True)
_CHUNK = 5000
MEMBER_FIELDS = ("production_facility_ids", "control_facility_ids")


def _enterprise_snapshot(row: dict[str, Any]) -> Snapshot:
    """The enterprise with names and upper industry levels derived from its codes."""
    industry = tables.industries().get(row.get("industry_code") or "")
    path = tables.industry_path(row.get("industry_code"))
    district = tables.county(row.get("district_code"))
    return EnterpriseSnapshot.model_validate(
        {
            **row,
            "district_name": district.name if district else None,
            "industry_name": industry.name if industry else None,
            "industry_section": path["section"].code if "section" in path else None,
            "industry_division": path["division"].code if "division" in path else None,
        }
    )


@dataclass(frozen=True)
class Kind:
    """How one entity type is stored, tracked and published."""

    name: str
    table: Table
    fields: tuple[str, ...]
    tracked: tuple[str, ...]
    model: type[Snapshot]
    pk: str = "id"
    defaults: dict[str, Any] = field(default_factory=dict)
    to_snapshot: Callable[[dict[str, Any]], Snapshot] | None = None

    def snapshot(self, row: dict[str, Any]) -> Snapshot:
        if self.to_snapshot is not None:
            return self.to_snapshot(row)
        return self.model.model_validate({**row, "id": row[self.pk]})

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if f not in MEMBER_FIELDS)


ENTERPRISE = Kind(
    name="enterprise",
    table=Enterprise.__table__,
    fields=(
        "name",
        "credit_code",
        "district_code",
        "zone",
        "town",
        "address",
        "longitude",
        "latitude",
        "industry_code",
        "key_industry",
        "performance_grade",
        "performance_grade_since",
        "control_type",
        "exempt",
        "production_status",
        "om_company",
        "contacts",
    ),
    tracked=(
        "district_code",
        "performance_grade",
        "performance_grade_since",
        "control_type",
        "exempt",
        "production_status",
    ),
    model=EnterpriseSnapshot,
    defaults={
        "performance_grade": "none",
        "exempt": False,
        "production_status": "normal",
        "contacts": [],
    },
    to_snapshot=_enterprise_snapshot,
)
PRODUCTION_LINE = Kind(
    name="production_line",
    table=ProductionLine.__table__,
    fields=("enterprise_id", "name", "process"),
    tracked=("enterprise_id",),
    model=ProductionLineSnapshot,
)
FACILITY = Kind(
    name="facility",
    table=Facility.__table__,
    fields=(
        "enterprise_id",
        "kind",
        "name",
        "code",
        "production_line_id",
        "process",
        "control_type",
        "rated_kw",
        "status",
    ),
    tracked=("enterprise_id", "kind", "production_line_id", "rated_kw", "status"),
    model=FacilitySnapshot,
    defaults={"status": "active"},
)
CONTROL_GROUP = Kind(
    name="control_group",
    table=ControlGroup.__table__,
    fields=(
        "enterprise_id",
        "name",
        "required_mode",
        "start_lead_min",
        "stop_lag_min",
        "valid_from",
        "valid_to",
        *MEMBER_FIELDS,
    ),
    tracked=(
        "required_mode",
        "start_lead_min",
        "stop_lag_min",
        "valid_from",
        "valid_to",
        *MEMBER_FIELDS,
    ),
    model=ControlGroupSnapshot,
    defaults={"required_mode": "all", "start_lead_min": 5, "stop_lag_min": 5},
)
DEVICE = Kind(
    name="device",
    table=Device.__table__,
    pk="mn",
    fields=(
        "enterprise_id",
        "name",
        "password_hash",
        "protocol_version",
        "electricity_profile",
        "crc_variant",
        "status",
        "rtd_interval_s",
    ),
    tracked=(
        "enterprise_id",
        "password_hash",
        "protocol_version",
        "electricity_profile",
        "crc_variant",
        "status",
    ),
    model=DeviceSnapshot,
    defaults={
        "protocol_version": "2017",
        "electricity_profile": "ecowatt-default",
        "crc_variant": "standard",
        "status": "active",
    },
    to_snapshot=lambda row: DeviceSnapshot.model_validate({**row, "id": row["mn"]}),
)
POINT = Kind(
    name="point",
    table=Point.__table__,
    fields=(
        "enterprise_id",
        "facility_id",
        "point_type",
        "name",
        "is_key",
        "device_mn",
        "circuit",
        "ct_ratio",
        "pt_ratio",
        "rated_kw",
        "max_load_kw",
        "start_stop_kw",
        "low_load_kw",
        "commissioned_at",
        "status",
        "expected_interval_s",
    ),
    tracked=(
        "enterprise_id",
        "facility_id",
        "point_type",
        "is_key",
        "device_mn",
        "circuit",
        "ct_ratio",
        "pt_ratio",
        "rated_kw",
        "max_load_kw",
        "start_stop_kw",
        "low_load_kw",
        "status",
        "expected_interval_s",
    ),
    model=PointSnapshot,
    defaults={
        "is_key": True,
        "circuit": 1,
        "ct_ratio": 1.0,
        "pt_ratio": 1.0,
        "status": "active",
        "expected_interval_s": 60,
    },
)

KINDS: dict[str, Kind] = {
    k.name: k for k in (ENTERPRISE, PRODUCTION_LINE, FACILITY, DEVICE, POINT, CONTROL_GROUP)
}
"""Every entity type, parents before children (the order of a full re-publish)."""


def _json(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _history_value(name: str, value: Any) -> Any:
    if name == "password_hash":
        return "(set)" if value else None  # never the hash itself
    return _json(value)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class WriteResult:
    """What a write did, by entity id."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)


class ArchiveWriter:
    """Applies desired states to the archive inside the caller's transaction."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        actor: str | None,
        reason: str | None = None,
        now: datetime | None = None,
        exclusive: bool = False,
    ) -> None:
        self.session = session
        self.actor = actor
        self.reason = reason
        self.now = now or datetime.now(UTC)
        self.published = 0
        self.exclusive = exclusive
        self._locked = False

    async def _lock(self) -> None:
        if not self._locked:
            lock = (
                func.pg_advisory_xact_lock if self.exclusive else func.pg_advisory_xact_lock_shared
            )
            await self.session.execute(select(lock(ARCHIVE_LOCK)))
            self._locked = True

    async def load(self, kind: Kind, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored rows of `ids` (with control-group members), by id."""
        table = kind.table
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            result = await self.session.execute(select(table).where(table.c[kind.pk].in_(chunk)))
            for stored in result.mappings():
                found[stored[kind.pk]] = dict(stored)
        if kind is CONTROL_GROUP and found:
            for row in found.values():
                row["production_facility_ids"] = []
                row["control_facility_ids"] = []
            members = ControlGroupMember.__table__
            for chunk in _chunks(list(found)):
                result = await self.session.execute(
                    select(members).where(members.c.group_id.in_(chunk))
                )
                for member in result.mappings():
                    found[member["group_id"]][f"{member['role']}_facility_ids"].append(
                        member["facility_id"]
                    )
            for row in found.values():
                for name in MEMBER_FIELDS:
                    row[name] = sorted(row[name])
        return found

    async def upsert(self, kind: Kind, states: Sequence[dict[str, Any]]) -> WriteResult:
        """Create or update entities to `states` (dicts with the pk and the fields to set)."""
        await self._lock()
        result = WriteResult()
        existing = await self.load(kind, [s[kind.pk] for s in states])
        buried = await self._tombstones(
            kind, [s[kind.pk] for s in states if s[kind.pk] not in existing]
        )
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        for state in states:
            state = {
                k: (sorted(v) if k in MEMBER_FIELDS else v)
                for k, v in state.items()
                if k == kind.pk or k in kind.fields
            }
            key = state[kind.pk]
            old = existing.get(key)
            if old is None:
                row = dict.fromkeys(kind.fields) | kind.defaults | state
                row |= {
                    "revision": buried.get(key, 0) + 1,
                    "created_at": self.now,
                    "updated_at": self.now,
                    "created_by": self.actor,
                    "updated_by": self.actor,
                }
                inserts.append(row)
                result.created.append(key)
                changes = {
                    f: {"old": None, "new": _history_value(f, row[f])}
                    for f in kind.tracked
                    if row.get(f) not in (None, [], False)
                }
                operation = "create"
            else:
                changed = [f for f in kind.fields if f in state and state[f] != old.get(f)]
                if not changed:
                    result.unchanged.append(key)
                    result.rows[key] = old
                    continue
                row = old | {f: state[f] for f in changed}
                row |= {
                    "revision": old["revision"] + 1,
                    "updated_at": self.now,
                    "updated_by": self.actor,
                }
                updates.append(row)
                result.updated.append(key)
                changes = {
                    f: {"old": _history_value(f, old.get(f)), "new": _history_value(f, row[f])}
                    for f in changed
                    if f in kind.tracked
                }
                operation = "update"
            result.rows[key] = row
            if changes:
                history.append(self._history(kind, row, operation, changes))
        await self._write_rows(kind, inserts, updates)
        if kind is ENTERPRISE:
            await self._record_grades(inserts, updates, existing)
        if history:
            await self.session.execute(insert(HistoryRecord.__table__), history)
        await self._publish(
            kind, [result.rows[k] for k in (*result.created, *result.updated)], "upsert"
        )
        return result

    async def delete(self, kind: Kind, ids: Sequence[str]) -> list[str]:
        """Delete entities (the caller checked that nothing refers to them)."""
        await self._lock()
        existing = await self.load(kind, ids)
        if not existing:
            return []
        table = kind.table
        for chunk in _chunks(list(existing)):
            await self.session.execute(delete(table).where(table.c[kind.pk].in_(chunk)))
        history = [
            self._history(
                kind,
                row,
                "delete",
                {
                    f: {"old": _history_value(f, row.get(f)), "new": None}
                    for f in kind.tracked
                    if row.get(f) not in (None, [], False)
                },
            )
            for row in existing.values()
        ]
        await self.session.execute(insert(HistoryRecord.__table__), history)
        tombstones = Tombstone.__table__
        statement = pg_insert(tombstones).values(
            [
                {
                    "entity": kind.name,
                    "entity_id": key,
                    "revision": row["revision"] + 1,
                    "deleted_at": self.now,
                }
                for key, row in existing.items()
            ]
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["entity", "entity_id"],
                set_={"revision": statement.excluded.revision, "deleted_at": self.now},
            )
        )
        await self._publish(kind, list(existing.values()), "delete")
        return list(existing)

    async def _tombstones(self, kind: Kind, ids: Sequence[str]) -> dict[str, int]:
        """The last revision of deleted entities among `ids`."""
        table = Tombstone.__table__
        found: dict[str, int] = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            rows = await self.session.execute(
                select(table.c.entity_id, table.c.revision).where(
                    table.c.entity == kind.name, table.c.entity_id.in_(chunk)
                )
            )
            found.update((key, revision) for key, revision in rows.all())
        return found

    def _history(
        self, kind: Kind, row: dict[str, Any], operation: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "entity": kind.name,
            "entity_id": row[kind.pk],
            "enterprise_id": row["id"] if kind is ENTERPRISE else row.get("enterprise_id"),
            "operation": operation,
            "changes": changes,
            "actor": self.actor,
            "reason": self.reason,
            "changed_at": self.now,
        }

    async def _write_rows(
        self, kind: Kind, inserts: list[dict[str, Any]], updates: list[dict[str, Any]]
    ) -> None:
        table = kind.table
        stored = (
            kind.pk,
            *kind.columns,
            "revision",
            "created_at",
            "updated_at",
            "created_by",
            "updated_by",
        )
        if inserts:
            await self.session.execute(
                insert(table), [{c: row[c] for c in stored} for row in inserts]
            )
        if updates:
            changing = [c for c in stored if c not in (kind.pk, "created_at", "created_by")]
            statement = (
                update(table)
                .where(table.c[kind.pk] == bindparam("key_"))
                .values({c: bindparam(f"v_{c}") for c in changing})
            )
            await self.session.execute(
                statement,
                [{"key_": row[kind.pk], **{f"v_{c}": row[c] for c in changing}} for row in updates],
                execution_options={"synchronize_session": False},
            )
        if kind is CONTROL_GROUP:
            members = ControlGroupMember.__table__
            touched = [row["id"] for row in (*inserts, *updates)]
            for chunk in _chunks(touched):
                await self.session.execute(delete(members).where(members.c.group_id.in_(chunk)))
            rows = [
                {"group_id": row["id"], "facility_id": facility, "role": role}
                for row in (*inserts, *updates)
                for role in ("production", "control")
                for facility in row[f"{role}_facility_ids"]
            ]
            if rows:
                await self.session.execute(insert(members), rows)

    async def _record_grades(
        self,
        inserts: list[dict[str, Any]],
        updates: list[dict[str, Any]],
        existing: dict[str, dict[str, Any]],
    ) -> None:
        grades = GradeRecord.__table__
        records = []
        for row in (*inserts, *updates):
            old = existing.get(row["id"])
            if old is None and row["performance_grade"] == "none":
                continue
            if old is not None and (
                old["performance_grade"],
                old["performance_grade_since"],
            ) == (row["performance_grade"], row["performance_grade_since"]):
                continue
            since = row["performance_grade_since"] or self.now.date()
            if old is not None:
                await self.session.execute(
                    update(grades)
                    .where(grades.c.enterprise_id == row["id"], grades.c.valid_to.is_(None))
                    .values(valid_to=since)
                )
            records.append(
                {
                    "enterprise_id": row["id"],
                    "grade": row["performance_grade"],
                    "valid_from": since,
                    "valid_to": None,
                    "actor": self.actor,
                    "reason": self.reason,
                    "recorded_at": self.now,
                }
            )
        if records:
            await self.session.execute(insert(grades), records)

    async def _publish(self, kind: Kind, rows: list[dict[str, Any]], operation: str) -> None:
        if not rows:
            return
        messages = []
        for row in rows:
            deleting = operation == "delete"
            change = RegistryChange(
                entity=kind.name,
                entity_id=row[kind.pk],
                operation="delete" if deleting else "upsert",
                revision=row["revision"] + 1 if deleting else row["revision"],
                changed_at=self.now,
                actor=self.actor,
                snapshot=None if deleting else kind.snapshot(row).model_dump(mode="json"),
            )
            messages.append(encode(change))
        await enqueue(self.session, OUTBOX, messages)
        self.published += len(messages)

    async def republish(self, kind: Kind) -> None:
        """Write the current snapshot of every entity of `kind` to the outbox again."""
        await self._lock()
        ids = list(
            (
                await self.session.scalars(
                    select(kind.table.c[kind.pk]).order_by(kind.table.c[kind.pk])
                )
            ).all()
        )
        for chunk in _chunks(ids):
            rows = await self.load(kind, chunk)
            await self._publish(kind, [rows[i] for i in chunk if i in rows], "upsert")


async def republish_all(session: AsyncSession, *, actor: str | None) -> int:
    """Write every entity's current snapshot to the outbox, parents first; the count.

    Holds the archive lock exclusively: a change committed before is included, one
    committed after gets an outbox row after these, so the bus never ends on an old state.
    """
    writer = ArchiveWriter(session, actor=actor, exclusive=True)
    for kind in KINDS.values():
        await writer.republish(kind)
    return writer.published
