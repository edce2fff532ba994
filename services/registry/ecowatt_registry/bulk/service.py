"""Creating an enterprise with its archive in one transaction: validated like the single
endpoints (field rules, ids, scope, cross-entity rules), every problem reported at once with
the item it concerns, then written together — history rows and `registry.changes` snapshots
(outbox) included — or not at all."""

from __future__ import annotations

import asyncio
from typing import Any

from ecowatt_kernel.identity import Identity
from ecowatt_kernel.passwords import hash_password
from ecowatt_kernel.problems import Conflict
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_registry import access, validation
from ecowatt_registry.archive import (
    CONTROL_GROUP,
    DEVICE,
    ENTERPRISE,
    FACILITY,
    POINT,
    PRODUCTION_LINE,
    ArchiveWriter,
    Kind,
)
from ecowatt_registry.bulk.models import BundleCreated, EnterpriseBundle
from ecowatt_registry.checks import ReferenceChecker
from ecowatt_registry.control_groups.views import cross_check as group_rules
from ecowatt_registry.points.views import cross_check as point_rules
from ecowatt_registry.schemas import field_problem

__all__ = ["create_bundle"]

ORDER: tuple[tuple[str, Kind], ...] = (
    ("enterprise", ENTERPRISE),
    ("production_lines", PRODUCTION_LINE),
    ("facilities", FACILITY),
    ("devices", DEVICE),
    ("points", POINT),
    ("control_groups", CONTROL_GROUP),
)
"""Sections of a bundle in the order they are written (references point backwards)."""
RULES = {"points": point_rules, "control_groups": group_rules}


def _error(loc: list[Any], message: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": message, "type": "value_error"}


async def create_bundle(
    *, session: AsyncSession, identity: Identity, bundle: EnterpriseBundle
) -> BundleCreated:
    """Create the enterprise and everything in the bundle, or nothing (422/403/409)."""
    errors: list[dict[str, Any]] = []
    enterprise = bundle.enterprise.model_dump(exclude={"reason"})
    enterprise_id = enterprise.pop("id", None) or access.new_id()
    access.check_district_allowed(identity, enterprise["district_code"])
    states: dict[str, dict[str, dict[str, Any]]] = {"enterprise": {enterprise_id: enterprise}}
    where: dict[tuple[str, str], list[Any]] = {("enterprise", enterprise_id): ["enterprise"]}
    ids: dict[str, list[str]] = {"enterprise": [enterprise_id]}
    passwords: dict[str, str] = {}
    for section, kind in ORDER[1:]:
        states[section] = {}
        ids[section] = []
        for index, item in enumerate(getattr(bundle, section)):
            data = item.model_dump(exclude={"reason", "password"})
            key = data.pop(kind.pk, None) or access.new_id()
            loc = [section, index]
            owner = data.get("enterprise_id") or enterprise_id
            if owner != enterprise_id:
                errors.append(_error([*loc, "enterprise_id"], "belongs to the bundle's enterprise"))
            data["enterprise_id"] = enterprise_id
            problem = validation.mn_problem(key) if kind.pk == "mn" else validation.id_problem(key)
            if problem:
                errors.append(_error([*loc, kind.pk], problem))
            if key in states[section]:
                errors.append(_error([*loc, kind.pk], f"{key} is given twice"))
            if rules := RULES.get(section):
                errors.extend(_error([*loc, f], m) for f, m in rules(data))
            password = getattr(item, "password", None)
            if password is not None:
                passwords[key] = password.get_secret_value()
            states[section][key] = data
            where[(section, key)] = loc
            ids[section].append(key)
    if problem := validation.id_problem(enterprise_id):
        errors.append(_error(["enterprise", "id"], problem))
    if errors:
        raise field_problem(errors)
    reader = ArchiveWriter(session, actor=None)
    for section, kind in ORDER:
        existing = await reader.load(kind, list(states[section]))
        if existing:
            raise Conflict(
                f"already in the archive: {', '.join(sorted(existing)[:5])}",
                errors=[_error([*where[(section, k)], kind.pk], "exists") for k in existing],
            )
    proposed = {kind.name: states[section] for section, kind in ORDER}
    issues = await ReferenceChecker(session, proposed, scope=identity.scope).check()
    if issues:
        section_of = {kind.name: section for section, kind in ORDER}
        raise field_problem(
            [
                _error([*where[(section_of[i.kind], i.key)], i.field], i.en)
                for i in issues
                if (section_of[i.kind], i.key) in where
            ]
        )
    for key, secret in passwords.items():
        states["devices"][key]["password_hash"] = await asyncio.to_thread(hash_password, secret)
    writer = ArchiveWriter(
        session, actor=access.actor_of(identity), reason=bundle.reason or "一次性建档"
    )
    created: dict[str, int] = {}
    with access.conflicts_as_409():
        for section, kind in ORDER:
            rows = [{kind.pk: key, **state} for key, state in states[section].items()]
            if rows:
                result = await writer.upsert(kind, rows)
                created[section] = len(result.created)
    return BundleCreated(enterprise_id=enterprise_id, created=created, ids=ids)
