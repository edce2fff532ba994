"""The rule table: the catalogue in force and its versions (every edit is a new version)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ecowatt_kernel.identity import Identity
from ecowatt_kernel.pagination import Page, PageRequest, fetch_page
from ecowatt_kernel.problems import NotFound, Problem
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_alarm import tables as T
from ecowatt_alarm.rules.catalogue import DEFAULT_RULES
from ecowatt_alarm.rules.models import RuleEdit

__all__ = ["edit_rule", "list_rules"]


async def list_rules(*, session: AsyncSession, page: PageRequest) -> Page[dict[str, Any]]:
    """The catalogue with parameters and versions, by code."""
    rows, total = await fetch_page(session, select(T.rule).order_by(T.rule.c.code), page)
    return Page.of([dict(r._mapping) for r in rows], total, page)


async def edit_rule(
    *, session: AsyncSession, code: str, body: RuleEdit, identity: Identity
) -> dict[str, Any]:
    """A new version of rule `code` with the changed parameters (422 on unknown ones)."""
    row = (
        (await session.execute(select(T.rule).where(T.rule.c.code == code).with_for_update()))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"rule {code} not found")
    unknown = set(body.params) - set(DEFAULT_RULES[code].params if code in DEFAULT_RULES else {})
    if unknown:
        raise Problem(f"unknown parameters: {', '.join(sorted(unknown))}", status=422)
    params = {**row["params"], **body.params}
    enabled = row["enabled"] if body.enabled is None else body.enabled
    version = row["version"] + 1
    await session.execute(
        update(T.rule)
        .where(T.rule.c.code == code)
        .values(
            params=params,
            enabled=enabled,
            version=version,
            updated_at=datetime.now(UTC),
            updated_by=identity.subject,
        )
    )
    await session.execute(
        T.rule_version.insert().values(
            code=code,
            version=version,
            enabled=enabled,
            params=params,
            changed_by=identity.subject,
            reason=body.reason,
        )
    )
    return {"code": code, "version": version, "params": params, "enabled": enabled}
