"""Who may read and write what: roles for writes, data scope for every query.

Reads are filtered by the caller's data scope on the server (a district officer sees the
enterprises of their districts, an enterprise user their own enterprise); an entity outside
the scope is reported as not found, so its existence does not leak. Writes need one of the
archive-editing roles *and* the entity inside the scope.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ecowatt_kernel.identity import DataScope, Identity, Role, require_roles
from ecowatt_kernel.ids import new_id as kernel_new_id
from ecowatt_kernel.problems import Conflict, Forbidden, NotFound
from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_registry.enterprises.models import Enterprise

EDIT_ROLES = (Role.CITY_SUPERVISOR, Role.DISTRICT_OFFICER, Role.OM_OPERATOR)
CanEdit = require_roles(*EDIT_ROLES)
"""Dependency: 403 unless the caller may edit the archive (admins always may)."""
IsAdmin = require_roles(Role.ADMIN)
"""Dependency: 403 unless the caller is an administrator."""


def visible(scope: DataScope) -> ColumnElement[bool]:
    """SQL condition on `Enterprise` keeping the enterprises `scope` may see."""
    return scope.where(district_column=Enterprise.district_code, enterprise_column=Enterprise.id)


async def visible_enterprise(
    session: AsyncSession, scope: DataScope, enterprise_id: str
) -> Enterprise:
    """The enterprise if the scope may see it, else 404."""
    found = await session.scalar(
        select(Enterprise).where(Enterprise.id == enterprise_id, visible(scope))
    )
    if found is None:
        raise NotFound(f"enterprise {enterprise_id} not found")
    return found


def check_district_allowed(identity: Identity, district_code: str) -> None:
    """403 when the caller's scope does not cover `district_code` (creating or moving)."""
    if not identity.scope.allows(district=district_code):
        raise Forbidden(f"district {district_code} is outside your data scope")


def new_id() -> str:
    """A fresh entity id (the kernel's UUIDv7, as hex)."""
    return kernel_new_id()


def actor_of(identity: Identity) -> str:
    return identity.subject


@contextmanager
def conflicts_as_409() -> Iterator[None]:
    """Turn a constraint the checks missed (e.g. a concurrent write) into a 409 problem."""
    try:
        yield
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
        raise Conflict(
            "the change conflicts with the stored archive"
            + (f" (constraint {constraint})" if constraint else ""),
        ) from None
