"""Checking credentials: lockout, password, account state, second factor, password age.

Failed attempts are counted per user name in Redis — also for names that do not exist, so
that the answers do not tell which accounts exist — and five failures within the window
lock the name (`423`, `Retry-After`). A lock of an existing account is also written to
`auth.user.locked_until`, where administrators see and lift it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ecowatt_kernel.passwords import hash_password
from ecowatt_kernel.problems import Problem
from ecowatt_kernel.redis_client import Redis
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_auth.accounts import totp
from ecowatt_auth.accounts.models import known_address, user
from ecowatt_auth.accounts.policy import PasswordPolicy
from ecowatt_auth.accounts.service import by_username, password_matches
from ecowatt_auth.crypto import DataCipher
from ecowatt_auth.sessions.store import PREFIX
from ecowatt_auth.settings import AuthSettings

__all__ = ["LoginRefused", "Verified", "check_credentials", "note_login"]

# Compared against when the user name is unknown, so that both answers take as long.
_DUMMY_HASH = hash_password("ecowatt: no such user")


class LoginRefused(Problem):
    """A refused login; `reason` goes to the audit event, `detail` to the client."""

    def __init__(
        self, detail: str, *, status: int, type_suffix: str, reason: str, **extensions: Any
    ) -> None:
        super().__init__(detail, status=status, type_suffix=type_suffix, **extensions)
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    """Credentials that passed: the user row and what the login may do next."""

    row: Any
    password_change: str | None
    """None, or why the password must be changed first: `initial` or `expired`."""


def _invalid() -> LoginRefused:
    return LoginRefused(
        "用户名或密码错误 (wrong user name or password)",
        status=401,
        type_suffix="invalid-credentials",
        reason="wrong user name or password",
    )


async def _locked_for(redis: Redis, name: str, row: Any) -> int:
    """Seconds the name stays locked (0: not locked)."""
    ttl = await redis.ttl(PREFIX + "lock:" + name)
    remaining = max(int(ttl), 0)
    if row is not None and row["locked_until"] is not None:
        remaining = max(remaining, int((row["locked_until"] - datetime.now(UTC)).total_seconds()))
    return max(remaining, 0)


async def _count_failure(
    redis: Redis, session: AsyncSession, name: str, row: Any, settings: AuthSettings
) -> bool:
    """Count one failure; True when it locked the name."""
    key = PREFIX + "fail:" + name
    async with redis.pipeline(transaction=True) as pipe:
        # the window starts at the first failure (SET NX: Redis 6 has no EXPIRE NX)
        pipe.set(key, 0, ex=settings.auth_lockout_window_s, nx=True)
        pipe.incr(key)
        _, count = await pipe.execute()
    if int(count) < settings.auth_lockout_failures:
        return False
    await redis.set(PREFIX + "lock:" + name, "1", ex=settings.auth_lockout_s)
    await redis.delete(key)
    if row is not None:
        until = datetime.now(UTC) + timedelta(seconds=settings.auth_lockout_s)
        await session.execute(update(user).where(user.c.id == row["id"]).values(locked_until=until))
        await session.commit()
    return True


def _locked_problem(seconds: int) -> LoginRefused:
    minutes = max(1, (seconds + 59) // 60)
    return LoginRefused(
        f"账号已锁定，请 {minutes} 分钟后再试或联系管理员 (locked after repeated failures; "
        f"try again in {minutes} min or ask an administrator)",
        status=423,
        type_suffix="account-locked",
        reason="account locked",
        retry_after=seconds,
    )


async def check_credentials(
    *,
    session: AsyncSession,
    redis: Redis,
    settings: AuthSettings,
    cipher: DataCipher,
    username: str,
    password: str,
    totp_code: str | None,
    now: datetime | None = None,
) -> Verified:
    """The user whose credentials these are, or LoginRefused (401/403/423)."""
    name = username.strip().lower()[:64]
    row = await by_username(session, username=name)
    locked = await _locked_for(redis, name, row)
    if locked > 0:
        raise _locked_problem(locked)
    matches = await password_matches(password, row["password_hash"] if row else _DUMMY_HASH)
    if row is None or not matches:
        if await _count_failure(redis, session, name, row, settings):
            raise _locked_problem(settings.auth_lockout_s)
        raise _invalid()
    now = now or datetime.now(UTC)
    if row["status"] != "active":
        raise LoginRefused(
            "账号已停用 (the account is disabled)",
            status=403,
            type_suffix="account-disabled",
            reason="account disabled",
        )
    if row["account_expires_at"] is not None and row["account_expires_at"] <= now:
        raise LoginRefused(
            "账号已过期 (the account has expired)",
            status=403,
            type_suffix="account-expired",
            reason="account expired",
        )
    if row["totp_enabled"]:
        if not totp_code:
            raise LoginRefused(
                "请输入动态口令 (enter the 6-digit code of your authenticator app)",
                status=401,
                type_suffix="totp-required",
                reason="second factor required",
            )
        secret = cipher.open(row["totp_secret"], aad=row["id"])
        step = totp.verify_totp(secret, totp_code, at=now.timestamp())
        if step is None or (row["totp_last_step"] is not None and step <= row["totp_last_step"]):
            if await _count_failure(redis, session, name, row, settings):
                raise _locked_problem(settings.auth_lockout_s)
            raise LoginRefused(
                "动态口令错误 (wrong or already used code)",
                status=401,
                type_suffix="invalid-totp",
                reason="wrong second factor",
            )
        await session.execute(
            update(user).where(user.c.id == row["id"]).values(totp_last_step=step)
        )
        await session.commit()
    await redis.delete(PREFIX + "fail:" + name)
    policy = PasswordPolicy(
        min_length=settings.auth_password_min_length,
        min_classes=settings.auth_password_min_classes,
        history=settings.auth_password_history,
        max_age_days=settings.auth_password_max_age_days,
    )
    change = None
    if row["must_change_password"]:
        change = "initial"
    else:
        expires = policy.expires_at(row["password_changed_at"])
        if expires is not None and expires <= now:
            change = "expired"
    return Verified(row=row, password_change=change)


def password_change_required(reason: str) -> LoginRefused:
    text = (
        "首次登录请先修改初始密码 (change the initial password first)"
        if reason == "initial"
        else "密码已过期，请先修改密码 (the password has expired; change it first)"
    )
    return LoginRefused(
        text + " — POST /api/auth/password",
        status=403,
        type_suffix="password-change-required",
        reason=f"password change required ({reason})",
        change_reason=reason,
    )


async def note_login(session: AsyncSession, *, user_id: str, address: str | None) -> bool:
    """Record a successful login; True when it came from an address this account never used
    before (and it had logged in before)."""
    now = datetime.now(UTC)
    await session.execute(
        update(user)
        .where(user.c.id == user_id)
        .values(last_login_at=now, last_login_ip=address, locked_until=None)
    )
    if not address:
        await session.commit()
        return False
    seen_before = await session.scalar(
        select(func.count()).select_from(known_address).where(known_address.c.user_id == user_id)
    )
    statement = insert(known_address).values(
        user_id=user_id, address=address, first_seen=now, last_seen=now, logins=1
    )
    result = await session.execute(
        statement.on_conflict_do_update(
            index_elements=[known_address.c.user_id, known_address.c.address],
            set_={"last_seen": now, "logins": known_address.c.logins + 1},
        ).returning(known_address.c.logins)
    )
    first_time_here = result.scalar_one() == 1
    await session.commit()
    return first_time_here and bool(seen_before)
