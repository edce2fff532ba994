"""Reading and changing the reduction list: archive checks, conflicts, versioned writes."""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ecowatt_kernel.contracts import (
    EnterpriseSnapshot,
    FacilitySnapshot,
    PointSnapshot,
    ProductionLineSnapshot,
)
from ecowatt_kernel.identity import DataScope
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import Select, and_, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan.access import visible
from ecowatt_control_plan.measures.models import (
    MEASURE_FIELDS,
    list_version,
    measure,
)

_LIST_LOCK = int.from_bytes(hashlib.sha256(b"control_plan.list").digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class Problem:
    """A problem with one measure: the field, an English and a Chinese explanation."""

    field: str
    en: str
    zh: str


@dataclass
class Change:
    """One measure to create, update (full new state) or delete."""

    kind: str  # create | update | delete
    measure_id: str
    values: dict[str, Any]


def new_measure_id() -> str:
    """A fresh measure id."""
    return "M" + uuid.uuid4().hex[:12]


def natural_key(values: dict[str, Any]) -> tuple[str, str, str, tuple[str, ...]]:
    """(enterprise, level, target kind, targets): at most one measure per key."""
    return (
        values["enterprise_id"],
        values["level"],
        values["target_kind"],
        tuple(sorted(values.get("target_ids") or [])),
    )


def normalised(values: dict[str, Any]) -> dict[str, Any]:
    """The comparable form of a measure's fields (windows as dicts, enterprise targets)."""
    out = {k: values.get(k) for k in MEASURE_FIELDS}
    out["windows"] = [
        w if isinstance(w, dict) else w.model_dump() for w in (values.get("windows") or [])
    ]
    out["target_ids"] = list(values.get("target_ids") or [])
    if out["target_kind"] == "enterprise":
        out["target_ids"] = [out["enterprise_id"]]
    if out.get("ramp_min") is None:
        out["ramp_min"] = 120
    return out


def target_problems(*, view: RegistryView, values: dict[str, Any]) -> list[Problem]:
    """Does the archive hold the enterprise and targets, of the right kind?"""
    enterprise_id = values["enterprise_id"]
    enterprise = view.enterprise(enterprise_id)
    if enterprise is None:
        return [
            Problem(
                "enterprise_id",
                f"enterprise {enterprise_id} is not in the archive",
                f"企业“{enterprise_id}”不在档案中",
            )
        ]
    kind = values["target_kind"]
    out: list[Problem] = []
    for target in values.get("target_ids") or []:
        if kind == "enterprise":
            continue
        snap = view.get(kind, target)
        label = {"production_line": "生产线", "facility": "设施", "point": "点位"}[kind]
        if snap is None or getattr(snap, "enterprise_id", None) != enterprise_id:
            out.append(
                Problem(
                    "target_ids",
                    f"{kind} {target} is not one of the enterprise's",
                    f"{label}“{target}”不属于该企业或不在档案中",
                )
            )
            continue
        if getattr(snap, "status", "active") == "removed":
            out.append(
                Problem("target_ids", f"{kind} {target} is removed", f"{label}“{target}”已拆除")
            )
        if isinstance(snap, FacilitySnapshot) and snap.kind != "production":
            out.append(
                Problem(
                    "target_ids",
                    f"facility {target} is a control facility: only production is stopped or "
                    "limited (control facilities keep running)",
                    f"设施“{target}”是治污设施：停限产对象只能是产污设施（治污设施须保持运行）",
                )
            )
        if isinstance(snap, PointSnapshot) and snap.point_type not in (
            "production",
            "combined",
            "total",
        ):
            out.append(
                Problem(
                    "target_ids",
                    f"point {target} measures no production ({snap.point_type})",
                    f"点位“{target}”不是产污、产治一体或总电点位",
                )
            )
    return out


def conflict_problems(measures: Iterable[dict[str, Any]]) -> dict[str, list[Problem]]:
    """Conflicts inside a whole list (by measure id): duplicate targets, EXEMPT with others."""
    by_key: dict[tuple[str, str, str, tuple[str, ...]], list[str]] = defaultdict(list)
    by_level: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for m in measures:
        by_key[natural_key(m)].append(m["measure_id"])
        by_level[(m["enterprise_id"], m["level"])].append(m)
    out: dict[str, list[Problem]] = defaultdict(list)
    for (_, level, _, _), ids in by_key.items():
        if len(ids) > 1:
            for mid in ids:
                others = "、".join(i for i in ids if i != mid)
                out[mid].append(
                    Problem(
                        "target_ids",
                        f"the same target has another {level} measure ({others})",
                        f"同一对象在同一预警级别已有措施（{others}）",
                    )
                )
    for (_, _), items in by_level.items():
        if len(items) > 1 and any(m["action"] == "EXEMPT" for m in items):
            for m in items:
                out[m["measure_id"]].append(
                    Problem(
                        "action",
                        "an exempt enterprise has no other measure at the same level",
                        "豁免企业在同一预警级别不能再有其他措施",
                    )
                )
    return out


def enterprise_fields(*, view: RegistryView, enterprise_id: str) -> dict[str, Any]:
    """Name and district of an enterprise from the archive (copied onto its measures)."""
    snap = view.enterprise(enterprise_id)
    if snap is None:
        return {"enterprise_name": None, "district_code": ""}
    return {"enterprise_name": snap.name, "district_code": snap.district_code}


def current() -> Select[Any]:
    """The current list (open rows)."""
    return select(measure).where(measure.c.version_to.is_(None))


def as_of(version: int) -> Select[Any]:
    """The list as it was at `version`."""
    return select(measure).where(
        measure.c.version_from <= version,
        or_(measure.c.version_to.is_(None), measure.c.version_to > version),
    )


def scoped(query: Select[Any], scope: DataScope) -> Select[Any]:
    return query.where(visible(scope, measure))


async def current_version(session: AsyncSession) -> int:
    """The newest list version (0: the list was never written)."""
    return int(await session.scalar(select(func.max(list_version.c.version))) or 0)


async def load_current(
    session: AsyncSession, *, enterprise_ids: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Current measures by id (optionally of some enterprises)."""
    query = current()
    if enterprise_ids is not None:
        query = query.where(measure.c.enterprise_id.in_(list(enterprise_ids)))
    rows = (await session.execute(query)).mappings()
    return {r["measure_id"]: dict(r) for r in rows}


async def measures_for_levels(
    session: AsyncSession, *, version: int, levels: Sequence[str]
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Measures of the list at `version`, by enterprise then level."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    query = as_of(version).where(measure.c.level.in_(list(levels))).order_by(measure.c.measure_id)
    for row in (await session.execute(query)).mappings():
        out[row["enterprise_id"]][row["level"]].append(dict(row))
    return out


async def apply_changes(
    session: AsyncSession,
    *,
    changes: Sequence[Change],
    view: RegistryView,
    actor: str | None,
    reason: str | None,
    source: str,
) -> int | None:
    """Write `changes` as one new list version; None when nothing really changed."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LIST_LOCK})
    stored = await load_current(session)
    effective: list[Change] = []
    for change in changes:
        before = stored.get(change.measure_id)
        if change.kind == "delete":
            if before is not None:
                effective.append(change)
            continue
        if before is not None and normalised(before) == normalised(change.values):
            continue
        effective.append(
            Change("update" if before is not None else "create", change.measure_id, change.values)
        )
    if not effective:
        return None
    counts = {kind: sum(1 for c in effective if c.kind == kind) for kind in ("create", "update")}
    counts["delete"] = sum(1 for c in effective if c.kind == "delete")
    version = await session.scalar(
        list_version.insert()
        .values(
            actor=actor,
            reason=reason,
            source=source,
            created=counts["create"],
            updated=counts["update"],
            deleted=counts["delete"],
        )
        .returning(list_version.c.version)
    )
    closing = [c.measure_id for c in effective if c.kind in ("update", "delete")]
    for start in range(0, len(closing), 5000):
        await session.execute(
            update(measure)
            .where(
                and_(
                    measure.c.measure_id.in_(closing[start : start + 5000]),
                    measure.c.version_to.is_(None),
                )
            )
            .values(version_to=version)
        )
    rows = []
    for change in effective:
        if change.kind == "delete":
            continue
        values = normalised(change.values)
        rows.append(
            {
                **values,
                **enterprise_fields(view=view, enterprise_id=values["enterprise_id"]),
                "measure_id": change.measure_id,
                "version_from": version,
                "updated_by": actor,
            }
        )
        if not rows[-1]["district_code"]:
            rows[-1]["district_code"] = (stored.get(change.measure_id) or {}).get(
                "district_code", ""
            )
    for start in range(0, len(rows), 2000):
        await session.execute(measure.insert(), rows[start : start + 2000])
    return int(version) if version is not None else None


async def diff(session: AsyncSession, *, older: int, newer: int) -> list[dict[str, Any]]:
    """What changed between two versions, by measure id."""
    before = {r["measure_id"]: dict(r) for r in (await session.execute(as_of(older))).mappings()}
    after = {r["measure_id"]: dict(r) for r in (await session.execute(as_of(newer))).mappings()}
    out = []
    for mid in sorted(set(before) | set(after)):
        b, a = before.get(mid), after.get(mid)
        if b is not None and a is not None and normalised(b) == normalised(a):
            continue
        change = "created" if b is None else "deleted" if a is None else "updated"
        ref = a or b
        assert ref is not None
        out.append(
            {
                "measure_id": mid,
                "change": change,
                "enterprise_id": ref["enterprise_id"],
                "district_code": ref["district_code"],
                "level": ref["level"],
                "before": normalised(b) if b else None,
                "after": normalised(a) if a else None,
            }
        )
    return out


def describe_target(*, view: RegistryView, kind: str, ids: Sequence[str]) -> str:
    """Names of a measure's targets, for people (export, launch notice)."""
    names = []
    for target in ids:
        snap = view.get(kind, target) if kind != "enterprise" else view.enterprise(target)
        named = EnterpriseSnapshot | ProductionLineSnapshot | FacilitySnapshot | PointSnapshot
        if isinstance(snap, named):
            names.append(snap.name)
        else:
            names.append(target)
    return "、".join(names)
