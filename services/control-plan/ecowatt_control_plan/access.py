"""Who may do what, and which rows a caller may see.

Reads are filtered on the server by the caller's data scope (`CurrentScope`): a district
officer sees the enterprises of their districts, an enterprise user their own enterprise —
every table that holds enterprise data carries `enterprise_id` and `district_code` for this.
A row outside the scope is reported as not found, so its existence does not leak.
"""

from __future__ import annotations

from typing import Any

from ecowatt_kernel.identity import DataScope, Identity, Role, require_roles
from ecowatt_kernel.problems import Forbidden
from sqlalchemy import ColumnElement, Table

BUREAU_ROLES = (Role.CITY_SUPERVISOR, Role.DISTRICT_OFFICER)
CanEditList = require_roles(*BUREAU_ROLES)
"""Edit the emergency reduction list (district officers inside their districts)."""
CanProposeOrders = require_roles(Role.CITY_SUPERVISOR)
"""Issue, amend and lift alert orders (city level)."""
CanApproveOrders = require_roles(Role.CITY_SUPERVISOR)
"""Approve or reject a proposed order change (a bureau role; never the proposer)."""
CanHandleIssues = require_roles(*BUREAU_ROLES)
"""Verify and close supervision issues (district officers inside their districts)."""
CanOperate = require_roles(Role.OM_OPERATOR, Role.CITY_SUPERVISOR)
"""Run the compliance pass on demand."""


def visible(scope: DataScope, table: Table) -> ColumnElement[bool]:
    """SQL condition keeping the rows of `table` the scope may see."""
    return scope.where(
        district_column=table.c.district_code, enterprise_column=table.c.enterprise_id
    )


def check_allowed(identity: Identity, *, district: str | None, enterprise_id: str | None) -> None:
    """403 unless the caller's scope covers the enterprise (writes)."""
    if not identity.scope.allows(district=district, enterprise_id=enterprise_id):
        raise Forbidden(f"enterprise {enterprise_id} is outside your data scope")


def actor_of(identity: Identity) -> str:
    return identity.subject


def role_of(identity: Identity) -> str:
    """The caller's most significant role, for journals."""
    for role in (
        Role.ADMIN,
        Role.CITY_SUPERVISOR,
        Role.DISTRICT_OFFICER,
        Role.OM_OPERATOR,
        Role.ENTERPRISE_USER,
    ):
        if role in identity.roles:
            return role.value
    return next(iter(sorted(identity.roles)), "unknown")


def jsonable(value: Any) -> Any:
    """Datetimes and sets made JSON-friendly (evidence, audit details)."""
    from datetime import date, datetime

    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value
