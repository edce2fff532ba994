"""Login for people: browser sessions (cookie + CSRF), bearer tokens for scripts, logout,
password change, the second factor, and `GET /me`.

Every login attempt, logout and password change writes its own audit event (with the user
name tried and the reason of a refusal), so the gateway writes none for these requests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.audit import audit_event, client_address
from ecowatt_kernel.identity import CurrentIdentity, Identity, Role
from ecowatt_kernel.problems import Forbidden, Problem, Unauthorized
from fastapi import APIRouter, Request, Response
from sqlalchemy import update

from ecowatt_auth.accounts import totp
from ecowatt_auth.accounts.models import user
from ecowatt_auth.accounts.service import (
    change_password,
    get_user,
    identity_of,
    password_matches,
    scope_of,
)
from ecowatt_auth.authz.roles import ROLES
from ecowatt_auth.runtime import AuthRuntime, Runtime, publish_audit
from ecowatt_auth.sessions.models import (
    Credentials,
    Me,
    PasswordChange,
    SessionInfo,
    TokenIssued,
    TotpCode,
    TotpDisable,
    TotpSetup,
)
from ecowatt_auth.sessions.service import (
    LoginRefused,
    Verified,
    check_credentials,
    note_login,
    password_change_required,
)
from ecowatt_auth.sessions.store import SessionData

router = APIRouter(tags=["login"])

_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "invalid-credentials, totp-required or invalid-totp (problem)"},
    403: {"description": "account-disabled, account-expired or password-change-required"},
    423: {"description": "account-locked (problem with `retry_after` seconds)"},
    429: {"description": "too many requests from this address (`Retry-After`)"},
}


async def _verify(
    request: Request,
    runtime: AuthRuntime,
    db_session: DbSession,
    body: Credentials,
    *,
    action: str,
) -> Verified:
    """Check credentials; a refusal is audited and raised."""
    try:
        return await check_credentials(
            session=db_session,
            redis=runtime.context.redis,
            settings=runtime.settings,
            cipher=runtime.cipher,
            username=body.username,
            password=body.password.get_secret_value(),
            totp_code=body.totp_code,
        )
    except LoginRefused as refused:
        await db_session.rollback()
        name = body.username.strip().lower()[:64]
        await publish_audit(
            request,
            runtime,
            audit_event(
                request,
                action=action,
                resource=f"user:{name}",
                actor=name,
                actor_kind="anonymous",
                outcome="denied" if refused.status in (403, 423) else "failed",
                details={
                    "username": name,
                    "reason": refused.reason,
                    "status": refused.status,
                    "user_agent": request.headers.get("user-agent", "")[:200],
                },
            ),
        )
        raise


async def _login(
    request: Request, runtime: AuthRuntime, db_session: DbSession, body: Credentials, action: str
) -> tuple[Any, Identity, bool]:
    verified = await _verify(request, runtime, db_session, body, action=action)
    row = verified.row
    if verified.password_change is not None:
        refused = password_change_required(verified.password_change)
        await publish_audit(
            request,
            runtime,
            audit_event(
                request,
                action=action,
                resource=f"user:{row['id']}",
                actor=row["id"],
                actor_kind="user",
                outcome="denied",
                details={"username": row["username"], "reason": refused.reason},
            ),
        )
        raise refused
    address = client_address(request)
    new_address = await note_login(db_session, user_id=row["id"], address=address)
    identity = identity_of(row, runtime.view)
    return row, identity, new_address


async def _audit_login(
    request: Request,
    runtime: AuthRuntime,
    row: Any,
    identity: Identity,
    *,
    action: str,
    new_address: bool,
) -> None:
    await publish_audit(
        request,
        runtime,
        audit_event(
            request,
            identity=identity,
            action=action,
            resource=f"user:{row['id']}",
            details={
                "username": row["username"],
                "role": row["role"],
                "new_address": new_address,
                "user_agent": request.headers.get("user-agent", "")[:200],
            },
        ),
    )


def me_of(identity: Identity, row: Any | None, runtime: AuthRuntime) -> Me:
    role = next(iter(sorted(identity.roles)), None)
    return Me(
        id=identity.subject,
        username=row["username"] if row is not None else None,
        display_name=identity.name,
        kind=identity.kind,
        role=Role(row["role"]) if row is not None else role,
        role_name=ROLES[Role(row["role"])].name if row is not None else None,
        roles=sorted(identity.roles),
        scope=scope_of(row) if row is not None else None,
        effective_districts=sorted(identity.scope.districts),
        effective_enterprises=sorted(identity.scope.enterprises),
        all_data=identity.scope.all,
        totp_enabled=bool(row["totp_enabled"]) if row is not None else False,
        password_expires_at=runtime.policy.expires_at(row["password_changed_at"])
        if row is not None
        else None,
    )


def _session_info(
    data: SessionData, identity: Identity, row: Any, runtime: AuthRuntime
) -> SessionInfo:
    return SessionInfo(
        user=me_of(identity, row, runtime),
        csrf_token=data.csrf,
        created_at=datetime.fromtimestamp(data.created_at, UTC),
        expires_at=datetime.fromtimestamp(data.expires_at(runtime.sessions.absolute_s), UTC),
        idle_timeout_s=runtime.sessions.idle_s,
    )


def set_session_cookies(
    response: Response, runtime: AuthRuntime, session_id: str, csrf: str
) -> None:
    settings = runtime.settings
    response.set_cookie(
        settings.session_cookie,
        session_id,
        max_age=settings.auth_session_absolute_s,
        path="/",
        secure=settings.auth_cookie_secure,
        httponly=True,
        samesite="lax",
    )
    response.set_cookie(
        settings.csrf_cookie,
        csrf,
        max_age=settings.auth_session_absolute_s,
        path="/",
        secure=settings.auth_cookie_secure,
        httponly=False,
        samesite="strict",
    )


def clear_session_cookies(response: Response, runtime: AuthRuntime) -> None:
    settings = runtime.settings
    for name, httponly in ((settings.session_cookie, True), (settings.csrf_cookie, False)):
        response.delete_cookie(
            name, path="/", secure=settings.auth_cookie_secure, httponly=httponly, samesite="lax"
        )


@router.post(
    "/session",
    summary="Log in (browser): sets the session and CSRF cookies",
    response_model=SessionInfo,
    responses=_REFUSALS,
)
async def login(
    body: Credentials,
    request: Request,
    response: Response,
    db_session: DbSession,
    runtime: Runtime,
) -> SessionInfo:
    """Checks the credentials (lockout, password, account state, TOTP, password age) and
    starts a session: an HttpOnly cookie, plus the CSRF token in the body and a readable
    cookie. A password that must be changed gives 403 `password-change-required`."""
    row, identity, new_address = await _login(request, runtime, db_session, body, "auth.login")
    session_id, data = await runtime.sessions.create(identity=identity, ip=client_address(request))
    set_session_cookies(response, runtime, session_id, data.csrf)
    await _audit_login(
        request, runtime, row, identity, action="auth.login", new_address=new_address
    )
    return _session_info(data, identity, row, runtime)


async def _current_session(request: Request, runtime: AuthRuntime) -> SessionData:
    session_id = request.cookies.get(runtime.settings.session_cookie)
    data = await runtime.sessions.get(session_id) if session_id else None
    if data is None:
        raise Unauthorized("没有登录或会话已过期 (not logged in, or the session ended)")
    return data


@router.get("/session", summary="The current browser session", response_model=SessionInfo)
async def current_session(
    request: Request, db_session: DbSession, runtime: Runtime, identity: CurrentIdentity
) -> SessionInfo:
    """What the SPA needs after a reload: who is logged in, the CSRF token, the timeouts."""
    data = await _current_session(request, runtime)
    row = await get_user(db_session, user_id=data.user_id)
    return _session_info(data, identity, row, runtime)


@router.delete(
    "/session", summary="Log out (ends the session, clears the cookies)", status_code=204
)
async def logout(request: Request, runtime: Runtime, identity: CurrentIdentity) -> Response:
    response = Response(status_code=204)
    session_id = request.cookies.get(runtime.settings.session_cookie)
    if session_id:
        await runtime.sessions.delete(session_id)
    clear_session_cookies(response, runtime)
    await publish_audit(
        request,
        runtime,
        audit_event(
            request, identity=identity, action="auth.logout", resource=f"user:{identity.subject}"
        ),
    )
    return response


@router.post(
    "/token",
    summary="Log in (script): a bearer token",
    response_model=TokenIssued,
    responses=_REFUSALS,
)
async def issue_token(
    body: Credentials, request: Request, db_session: DbSession, runtime: Runtime
) -> TokenIssued:
    """The same checks as a browser login; the answer is an identity token for
    `Authorization: Bearer …`, valid `expires_in` seconds, revoked by `DELETE /token`."""
    row, identity, new_address = await _login(request, runtime, db_session, body, "auth.token")
    ttl = timedelta(seconds=runtime.settings.auth_access_token_s)
    now = datetime.now(UTC)
    token = runtime.signer.sign(identity, ttl=ttl, now=now)
    await _audit_login(
        request, runtime, row, identity, action="auth.token", new_address=new_address
    )
    return TokenIssued(
        access_token=token, expires_in=int(ttl.total_seconds()), expires_at=now + ttl
    )


@router.delete("/token", summary="Revoke the bearer token of this request", status_code=204)
async def revoke_token(
    request: Request, db_session: DbSession, runtime: Runtime, identity: CurrentIdentity
) -> Response:
    if identity.token_id is None or identity.expires_at is None:
        raise Problem("this token cannot be revoked (no id)", status=400)
    await runtime.sessions.revoke_token(
        db_session,
        jti=identity.token_id,
        subject=identity.subject,
        expires_at=identity.expires_at,
        reason="logout",
    )
    await publish_audit(
        request,
        runtime,
        audit_event(
            request,
            identity=identity,
            action="auth.token.revoke",
            resource=f"token:{identity.token_id}",
        ),
    )
    return Response(status_code=204)


@router.post(
    "/password",
    summary="Change one's password (also an initial or expired one)",
    status_code=204,
    responses={**_REFUSALS, 422: {"description": "password-policy: `violations` lists each rule"}},
)
async def password(
    body: PasswordChange, request: Request, db_session: DbSession, runtime: Runtime
) -> Response:
    """Needs the current credentials, not a session: a person whose password expired has
    none. Every session and token of the account ends; log in again with the new password."""
    verified = await _verify(request, runtime, db_session, body, action="auth.password.change")
    row = verified.row
    try:
        updated = await change_password(
            db_session,
            user_id=row["id"],
            new=body.new_password.get_secret_value(),
            policy=runtime.policy,
        )
    except Problem as problem:
        await db_session.rollback()
        await _audit_change(request, runtime, row, reason=problem.type_suffix)
        raise
    await db_session.commit()
    await runtime.sessions.end_user_access(row["id"], updated["not_before"])
    await _audit_change(request, runtime, row)
    return Response(status_code=204)


async def _audit_change(
    request: Request, runtime: AuthRuntime, row: Any, *, reason: str | None = None
) -> None:
    details = {"username": row["username"], **({"reason": reason} if reason else {})}
    await publish_audit(
        request,
        runtime,
        audit_event(
            request,
            action="auth.password.change",
            resource=f"user:{row['id']}",
            actor=row["id"],
            actor_kind="user",
            outcome="failed" if reason else "success",
            details=details,
        ),
    )


@router.get("/me", summary="Who is calling", response_model=Me)
async def me(identity: CurrentIdentity, db_session: DbSession, runtime: Runtime) -> Me:
    row = None
    if identity.kind == "user":
        try:
            row = await get_user(db_session, user_id=identity.subject)
        except Problem:
            row = None  # a development token (`make token`) names no account
    return me_of(identity, row, runtime)


async def _own_account(identity: Identity, db_session: DbSession) -> Any:
    if identity.kind != "user":
        raise Forbidden("only people have a second factor")
    try:
        return await get_user(db_session, user_id=identity.subject, for_update=True)
    except Problem:
        raise Forbidden("this identity has no account") from None


@router.post(
    "/totp/setup", summary="Start enrolling a second factor (TOTP)", response_model=TotpSetup
)
async def totp_setup(
    identity: CurrentIdentity, db_session: DbSession, runtime: Runtime
) -> TotpSetup:
    """A new secret, stored but not in force until `POST /totp/enable` proves the app has it."""
    row = await _own_account(identity, db_session)
    if row["totp_enabled"]:
        raise Problem("a second factor is already enabled; disable it first", status=409)
    secret = totp.new_secret()
    await db_session.execute(
        update(user)
        .where(user.c.id == row["id"])
        .values(totp_secret=runtime.cipher.seal(secret, aad=row["id"]), totp_last_step=None)
    )
    await db_session.commit()
    return TotpSetup(
        secret=secret,
        otpauth_uri=totp.otpauth_uri(
            secret, account=row["username"], issuer=runtime.settings.auth_totp_issuer
        ),
    )


@router.post("/totp/enable", summary="Enable the second factor with a first code", status_code=204)
async def totp_enable(
    body: TotpCode,
    request: Request,
    identity: CurrentIdentity,
    db_session: DbSession,
    runtime: Runtime,
) -> Response:
    row = await _own_account(identity, db_session)
    if not row["totp_secret"] or row["totp_enabled"]:
        raise Problem("start with POST /totp/setup", status=409)
    step = totp.verify_totp(runtime.cipher.open(row["totp_secret"], aad=row["id"]), body.code)
    if step is None:
        raise Problem("动态口令错误 (wrong code)", status=422, type_suffix="invalid-totp")
    await db_session.execute(
        update(user).where(user.c.id == row["id"]).values(totp_enabled=True, totp_last_step=step)
    )
    await db_session.commit()
    await _audit_own(request, runtime, identity, "auth.totp.enable")
    return Response(status_code=204)


async def _audit_own(
    request: Request, runtime: AuthRuntime, identity: Identity, action: str
) -> None:
    """The audit event of a change a person made to their own account."""
    await publish_audit(
        request,
        runtime,
        audit_event(request, identity=identity, action=action, resource=f"user:{identity.subject}"),
    )


@router.post("/totp/disable", summary="Disable one's second factor", status_code=204)
async def totp_disable(
    body: TotpDisable,
    request: Request,
    identity: CurrentIdentity,
    db_session: DbSession,
    runtime: Runtime,
) -> Response:
    """Needs the password and a current code: a stolen session alone cannot remove it."""
    row = await _own_account(identity, db_session)
    if not row["totp_enabled"]:
        raise Problem("no second factor is enabled", status=409)
    good_password = await password_matches(body.password.get_secret_value(), row["password_hash"])
    step = totp.verify_totp(runtime.cipher.open(row["totp_secret"], aad=row["id"]), body.code)
    if not good_password or step is None:
        raise Problem(
            "密码或动态口令错误 (wrong password or code)",
            status=403,
            type_suffix="wrong-credentials",
        )
    await db_session.execute(
        update(user)
        .where(user.c.id == row["id"])
        .values(totp_enabled=False, totp_secret=None, totp_last_step=None)
    )
    await db_session.commit()
    await _audit_own(request, runtime, identity, "auth.totp.disable")
    return Response(status_code=204)
