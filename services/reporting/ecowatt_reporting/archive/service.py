"""Keeping the archive copy current from the registry view.

At start-up, once the view has caught up with `registry.changes`, every snapshot is written
(`sync_all`); afterwards each applied change marks its entity dirty and `flush` writes the
dirty ones (the archive job runs it every second). A row is only overwritten by a snapshot of
a later `updated_at`, so replays and the start-up sync never move a row backwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from ecowatt_kernel.contracts import (
    ControlGroupSnapshot,
    EnterpriseSnapshot,
    FacilitySnapshot,
    PointSnapshot,
    Snapshot,
)
from ecowatt_kernel.db import Database
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import ColumnElement, Table, func, literal_column, or_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_reporting.archive.models import CONTROL_GROUP, ENTERPRISE, FACILITY, POINT
from ecowatt_reporting.database import CURRENT_TXID_SQL

__all__ = ["ArchiveSync", "row_of"]

_logger = logging.getLogger(__name__)
TABLES: dict[str, Table] = {
    "enterprise": ENTERPRISE,
    "facility": FACILITY,
    "point": POINT,
    "control_group": CONTROL_GROUP,
}


def row_of(snapshot: Snapshot) -> dict[str, Any]:
    """The archive-copy row of a snapshot (without its change time and flags)."""
    if isinstance(snapshot, EnterpriseSnapshot):
        return {
            "id": snapshot.id,
            "name": snapshot.name,
            "credit_code": snapshot.credit_code,
            "district_code": snapshot.district_code,
            "district_name": snapshot.district_name,
            "zone": snapshot.zone,
            "town": snapshot.town,
            "address": snapshot.address,
            "longitude": snapshot.longitude,
            "latitude": snapshot.latitude,
            "industry_code": snapshot.industry_code,
            "industry_name": snapshot.industry_name,
            "industry_division": snapshot.industry_division
            or (snapshot.industry_code[:2] if snapshot.industry_code else None),
            "key_industry": snapshot.key_industry,
            "performance_grade": snapshot.performance_grade,
            "control_type": snapshot.control_type,
            "production_status": snapshot.production_status,
            "om_company": snapshot.om_company,
        }
    if isinstance(snapshot, FacilitySnapshot):
        return {
            "id": snapshot.id,
            "enterprise_id": snapshot.enterprise_id,
            "kind": snapshot.kind,
            "name": snapshot.name,
            "code": snapshot.code,
            "control_type": snapshot.control_type,
            "rated_kw": snapshot.rated_kw,
            "status": snapshot.status,
        }
    if isinstance(snapshot, PointSnapshot):
        return {
            "id": snapshot.id,
            "enterprise_id": snapshot.enterprise_id,
            "facility_id": snapshot.facility_id,
            "point_type": snapshot.point_type,
            "name": snapshot.name,
            "device_mn": snapshot.device_mn,
            "circuit": snapshot.circuit,
            "rated_kw": snapshot.rated_kw,
            "start_stop_kw": snapshot.start_stop_kw,
            "expected_interval_s": snapshot.expected_interval_s,
            "commissioned_at": snapshot.commissioned_at,
            "status": snapshot.status,
        }
    if isinstance(snapshot, ControlGroupSnapshot):
        return {
            "id": snapshot.id,
            "enterprise_id": snapshot.enterprise_id,
            "name": snapshot.name,
            "production_facility_ids": list(snapshot.production_facility_ids),
            "control_facility_ids": list(snapshot.control_facility_ids),
            "required_mode": snapshot.required_mode,
        }
    raise TypeError(f"no archive copy for {type(snapshot).__name__}")


def _upsert_statement(table: Table) -> Any:
    """INSERT … ON CONFLICT for one table, built once: executed with many rows it compiles
    once (a VALUES list of thousands of rows compiled anew blocked the event loop)."""
    statement = insert(table)
    updated: dict[str, ColumnElement[Any]] = {
        c.name: statement.excluded[c.name]
        for c in table.columns
        if c.name not in ("id", "synced_at", "txid")
    }
    updated["synced_at"] = func.now()
    updated["txid"] = literal_column(CURRENT_TXID_SQL)
    return statement.on_conflict_do_update(
        index_elements=[table.c.id],
        set_=updated,
        where=or_(
            table.c.updated_at < statement.excluded.updated_at,
            table.c.deleted.is_distinct_from(statement.excluded.deleted),
        ),
    )


_UPSERTS = {name: _upsert_statement(table) for name, table in TABLES.items()}


async def _upsert(session: AsyncSession, entity: str, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), 2000):
        await session.execute(_UPSERTS[entity], rows[start : start + 2000])
        await asyncio.sleep(0)  # other requests between chunks (standalone shares the loop)


class ArchiveSync:
    """Writes the registry view's enterprises, facilities, points and groups to the copy."""

    def __init__(self, *, database: Database, view: RegistryView) -> None:
        self.database = database
        self.view = view
        self._dirty: dict[tuple[str, str], Snapshot | None] = {}
        self.synced = asyncio.Event()
        view.on_change(self._changed)

    def _changed(
        self, entity: str, entity_id: str, old: Snapshot | None, new: Snapshot | None
    ) -> None:
        if entity in TABLES:
            self._dirty[(entity, entity_id)] = new if new is not None else old

    def _rows(
        self, items: Iterable[tuple[tuple[str, str], Snapshot | None]]
    ) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
        for (entity, entity_id), snapshot in items:
            if snapshot is None:
                continue
            current = self.view.get(entity, entity_id)
            row = row_of(snapshot)
            row["updated_at"] = snapshot.updated_at
            row["deleted"] = current is None
            out[entity].append(row)
        return out

    async def sync_all(self) -> int:
        """Write every snapshot of the view (start-up); the number of rows offered."""
        await self.view.wait_ready()
        items = [
            ((entity, snapshot.id), snapshot)
            for entity in TABLES
            for snapshot in self.view.all(entity)
        ]
        self._dirty.clear()
        count = await self._write(items)
        self.synced.set()
        _logger.info("archive copy synchronised: %d snapshots", count)
        return count

    async def flush(self) -> int:
        """Write the entities changed since the last flush; how many."""
        if not self._dirty or not self.synced.is_set():
            return 0
        items, self._dirty = list(self._dirty.items()), {}
        try:
            return await self._write(items)
        except Exception:
            for key, snapshot in items:  # written next time
                self._dirty.setdefault(key, snapshot)
            raise

    async def _write(self, items: Sequence[tuple[tuple[str, str], Snapshot | None]]) -> int:
        rows = self._rows(items)
        async with self.database.transaction() as session:
            for entity in TABLES:
                await _upsert(session, entity, rows[entity])
        return sum(len(r) for r in rows.values())
