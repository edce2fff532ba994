"""Account lifecycle: create, change, disable, reset and change passwords, import, the
first administrator. Every change that alters what a person may do (role, scope, status,
password) sets `not_before`, which ends their tokens and sessions (see sessions.store)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ecowatt_kernel.identity import DataScope, Identity, Role
from ecowatt_kernel.passwords import hash_password, verify_password
from ecowatt_kernel.problems import Conflict, NotFound, Problem
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import Select, any_, delete, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_auth.accounts.models import (
    Scope,
    UserCreate,
    UserRead,
    UserUpdate,
    check_role_scope,
    password_history,
    user,
)
from ecowatt_auth.accounts.policy import PasswordPolicy, Violation
from ecowatt_auth.authz.roles import ROLES

__all__ = [
    "PasswordRejected",
    "by_username",
    "change_password",
    "create_user",
    "ensure_first_admin",
    "generate_password",
    "get_user",
    "hashed",
    "identity_of",
    "list_query",
    "password_matches",
    "reset_password",
    "to_read",
    "unlock",
    "update_user",
]

_logger = logging.getLogger(__name__)


class PasswordRejected(Problem):
    """The password breaks the policy; `violations` lists every rule."""

    status, type_suffix = 422, "password-policy"

    def __init__(self, violations: Sequence[Violation]) -> None:
        super().__init__(
            "密码不符合安全策略 (the password does not meet the policy): "
            + "; ".join(v.message for v in violations),
            violations=[v.as_dict() for v in violations],
        )


def generate_password(length: int = 16) -> str:
    """A random password that meets the policy (all four classes, no runs)."""
    alphabet = string.ascii_letters + string.digits + "!#$%&*+-=?@^_"
    policy = PasswordPolicy()
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        if not policy.violations(candidate) and all(
            any(c in group for c in candidate)
            for group in (string.ascii_lowercase, string.ascii_uppercase, string.digits)
        ):
            return candidate


def scope_of(row: Any) -> Scope:
    return Scope(
        kind=row["scope_kind"],
        districts=list(row["districts"] or []),
        enterprises=list(row["enterprises"] or []),
        om_company=row["om_company"],
    )


def to_read(row: Any, policy: PasswordPolicy) -> UserRead:
    """The API view of a user row."""
    role = Role(row["role"])
    return UserRead(
        id=row["id"],
        username=row["username"],
        display_name=row["display_name"],
        phone=row["phone"],
        email=row["email"],
        organisation=row["organisation"],
        role=role,
        role_name=ROLES[role].name if role in ROLES else role.value,
        scope=scope_of(row),
        status=row["status"],
        account_expires_at=row["account_expires_at"],
        locked_until=row["locked_until"],
        must_change_password=row["must_change_password"],
        password_changed_at=row["password_changed_at"],
        password_expires_at=policy.expires_at(row["password_changed_at"]),
        totp_enabled=row["totp_enabled"],
        last_login_at=row["last_login_at"],
        last_login_ip=row["last_login_ip"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


def identity_of(row: Any, view: RegistryView | None = None) -> Identity:
    """The identity a user row carries in tokens; an O&M company scope becomes the ids of
    the enterprises whose archive names that company (now)."""
    kind = row["scope_kind"]
    if kind == "city":
        scope = DataScope(all=True)
    elif kind == "districts":
        scope = DataScope(districts=frozenset(row["districts"] or ()))
    elif kind == "enterprises":
        scope = DataScope(enterprises=frozenset(row["enterprises"] or ()))
    else:
        company = (row["om_company"] or "").strip()
        found = (
            {
                e.id
                for e in view.all("enterprise")
                if e.om_company and e.om_company.strip() == company
            }
            if view is not None and company
            else set()
        )
        scope = DataScope(enterprises=frozenset(found | set(row["enterprises"] or ())))
    return Identity(
        subject=row["id"],
        kind="user",
        name=row["display_name"],
        roles=frozenset({Role(row["role"])}),
        scope=scope,
    )


async def get_user(session: AsyncSession, *, user_id: str, for_update: bool = False) -> Any:
    """The user row, or 404."""
    query = select(user).where(user.c.id == user_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"user {user_id} not found")
    return row


async def by_username(session: AsyncSession, *, username: str) -> Any:
    """The user row with this login name, or None."""
    query = select(user).where(user.c.username == username.strip().lower())
    return (await session.execute(query)).mappings().first()


async def _check_password(
    policy: PasswordPolicy, password: str, *, username: str, history: tuple[str, ...] = ()
) -> None:
    # Comparing with old hashes is scrypt work: off the event loop.
    violations = await asyncio.to_thread(
        policy.violations, password, username=username, previous_hashes=history
    )
    if violations:
        raise PasswordRejected(violations)


async def hashed(password: str) -> str:
    """scrypt hash of `password`, computed off the event loop (tens of ms of CPU)."""
    return await asyncio.to_thread(hash_password, password)


async def password_matches(password: str, encoded: str) -> bool:
    """scrypt comparison off the event loop."""
    return await asyncio.to_thread(verify_password, password, encoded)


async def _remember(session: AsyncSession, user_id: str, password_hash: str, keep: int) -> None:
    await session.execute(
        insert(password_history).values(user_id=user_id, password_hash=password_hash)
    )
    keep_ids = (
        select(password_history.c.id)
        .where(password_history.c.user_id == user_id)
        .order_by(password_history.c.id.desc())
        .limit(max(keep, 1))
    )
    await session.execute(
        delete(password_history).where(
            password_history.c.user_id == user_id, password_history.c.id.not_in(keep_ids)
        )
    )


async def _history(session: AsyncSession, user_id: str, keep: int) -> tuple[str, ...]:
    rows = await session.scalars(
        select(password_history.c.password_hash)
        .where(password_history.c.user_id == user_id)
        .order_by(password_history.c.id.desc())
        .limit(keep)
    )
    return tuple(rows)


async def create_user(
    session: AsyncSession, *, body: UserCreate, actor: str, policy: PasswordPolicy
) -> tuple[Any, str | None]:
    """Insert a user (409 when the name is taken); returns the row and the generated initial
    password, if the server chose it."""
    if await by_username(session, username=body.username) is not None:
        raise Conflict(f"user name {body.username} is taken")
    generated = None
    if body.password is not None:
        password = body.password.get_secret_value()
        await _check_password(policy, password, username=body.username)
    else:
        password = generated = generate_password()
    now = datetime.now(UTC)
    user_id = uuid.uuid4().hex
    password_hash = await hashed(password)
    await session.execute(
        insert(user).values(
            id=user_id,
            username=body.username,
            display_name=body.display_name,
            phone=body.phone,
            email=body.email,
            organisation=body.organisation,
            role=body.role.value,
            scope_kind=body.scope.kind,
            districts=body.scope.districts,
            enterprises=body.scope.enterprises,
            om_company=body.scope.om_company,
            status="active",
            account_expires_at=body.account_expires_at,
            password_hash=password_hash,
            password_changed_at=now,
            must_change_password=True,
            created_at=now,
            created_by=actor,
            updated_at=now,
            updated_by=actor,
        )
    )
    await _remember(session, user_id, password_hash, policy.history)
    return await get_user(session, user_id=user_id), generated


_ACCESS_COLUMNS = frozenset(
    {"role", "scope_kind", "districts", "enterprises", "om_company", "status", "account_expires_at"}
)
"""Columns whose change alters what the person may do: their sessions and tokens end."""


async def update_user(
    session: AsyncSession, *, user_id: str, body: UserUpdate, actor: str
) -> tuple[Any, bool]:
    """Apply the given fields; returns the row and whether the user's access changed (their
    sessions and tokens must then end)."""
    row = await get_user(session, user_id=user_id, for_update=True)
    given = body.model_dump(exclude_unset=True)
    values: dict[str, Any] = {}
    for key in ("display_name", "phone", "email", "organisation", "account_expires_at", "status"):
        if key in given:
            values[key] = given[key]
    role = body.role or Role(row["role"])
    if "role" in given and body.role is not None:
        values["role"] = body.role.value
    scope = body.scope or scope_of(row)
    if "scope" in given and body.scope is not None:
        values.update(
            scope_kind=body.scope.kind,
            districts=body.scope.districts,
            enterprises=body.scope.enterprises,
            om_company=body.scope.om_company,
        )
    try:
        check_role_scope(role, scope.kind)
    except ValueError as exc:
        raise Problem(str(exc), status=422, type_suffix="role-scope") from None
    changed = {k: v for k, v in values.items() if row[k] != v}
    access_changed = bool(_ACCESS_COLUMNS & changed.keys())
    if not changed:
        return row, False
    now = datetime.now(UTC)
    changed.update(updated_at=now, updated_by=actor)
    if access_changed:
        changed["not_before"] = now
    await session.execute(update(user).where(user.c.id == user_id).values(**changed))
    return await get_user(session, user_id=user_id), access_changed


async def _set_password(
    session: AsyncSession, user_id: str, password: str, *, actor: str, initial: bool, keep: int
) -> None:
    """Store a new password (remembered in the history); `initial`: one to change at the next
    login (a reset). Either way the account's earlier sessions and tokens end (not_before)."""
    now = datetime.now(UTC)
    password_hash = await hashed(password)
    values: dict[str, Any] = {
        "password_hash": password_hash,
        "password_changed_at": now,
        "must_change_password": initial,
        "not_before": now,
        "updated_at": now,
        "updated_by": actor,
    }
    if initial:
        values["locked_until"] = None
    await session.execute(update(user).where(user.c.id == user_id).values(**values))
    await _remember(session, user_id, password_hash, keep)


async def reset_password(
    session: AsyncSession,
    *,
    user_id: str,
    password: str | None,
    actor: str,
    policy: PasswordPolicy,
) -> str | None:
    """Set a new initial password (the user must change it); returns it when generated."""
    row = await get_user(session, user_id=user_id, for_update=True)
    generated = None
    if password is None:
        password = generated = generate_password()
    else:
        await _check_password(policy, password, username=row["username"])
    await _set_password(session, user_id, password, actor=actor, initial=True, keep=policy.history)
    return generated


async def change_password(
    session: AsyncSession,
    *,
    user_id: str,
    new: str,
    policy: PasswordPolicy,
) -> Any:
    """The user's own change, after their current credentials were checked: the new password
    must meet the policy and differ from the last ones. Returns the updated row."""
    row = await get_user(session, user_id=user_id, for_update=True)
    history = await _history(session, user_id, policy.history)
    await _check_password(policy, new, username=row["username"], history=history)
    await _set_password(session, user_id, new, actor=user_id, initial=False, keep=policy.history)
    return await get_user(session, user_id=user_id)


async def unlock(session: AsyncSession, *, user_id: str, actor: str) -> Any:
    """Lift a lockout."""
    await get_user(session, user_id=user_id)
    await session.execute(
        update(user)
        .where(user.c.id == user_id)
        .values(locked_until=None, updated_at=datetime.now(UTC), updated_by=actor)
    )
    return await get_user(session, user_id=user_id)


def list_query(
    *,
    q: str | None = None,
    role: Role | None = None,
    status: str | None = None,
    district: str | None = None,
) -> Select[Any]:
    """Users matching the filters, by user name."""
    query = select(user)
    if q:
        pattern = f"%{q}%"
        query = query.where(
            or_(
                user.c.username.ilike(pattern, escape="\\"),
                user.c.display_name.ilike(pattern, escape="\\"),
                user.c.organisation.ilike(pattern, escape="\\"),
                user.c.phone.ilike(pattern, escape="\\"),
            )
        )
    if role is not None:
        query = query.where(user.c.role == role.value)
    if status:
        query = query.where(user.c.status == status)
    if district:
        query = query.where(literal(district) == any_(user.c.districts))
    return query.order_by(user.c.username)


async def ensure_first_admin(
    session: AsyncSession, *, username: str, password: str | None, policy: PasswordPolicy
) -> str | None:
    """Create the first administrator when there are no accounts; returns the password to
    print when it was generated (None when accounts exist or the password was given)."""
    count = await session.scalar(select(func.count()).select_from(user))
    if count:
        return None
    generated = None
    if password is None:
        password = generated = generate_password()
    weak = policy.violations(password, username=username)
    if weak:
        _logger.warning(
            "ECOWATT_ADMIN_PASSWORD does not meet the password policy (%s): the administrator "
            "must change it at first login",
            ", ".join(v.code for v in weak),
        )
    body = UserCreate(
        username=username,
        display_name="系统管理员",
        role=Role.ADMIN,
        scope=Scope(kind="city"),
    )
    now = datetime.now(UTC)
    password_hash = await hashed(password)
    user_id = uuid.uuid4().hex
    await session.execute(
        insert(user).values(
            id=user_id,
            username=body.username,
            display_name=body.display_name,
            role=Role.ADMIN.value,
            scope_kind="city",
            status="active",
            password_hash=password_hash,
            password_changed_at=now,
            # A generated password was shown on a console: it must be replaced at first login.
            must_change_password=generated is not None or bool(weak),
            created_at=now,
            created_by="system:first-start",
            updated_at=now,
            updated_by="system:first-start",
        )
    )
    await _remember(session, user_id, password_hash, policy.history)
    return generated
