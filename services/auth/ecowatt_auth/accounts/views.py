"""Account administration (开设账号、分配权限): administrators only, every change audited."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.audit import audit_event
from ecowatt_kernel.excel import (
    XLSX_MEDIA_TYPE,
    CellError,
    WorkbookError,
    errors_to_xlsx,
    load_workbook_bytes,
    read_sheet,
    rows_to_xlsx,
)
from ecowatt_kernel.identity import CurrentIdentity, Identity, Role, require_roles
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import Problem
from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from sqlalchemy import update

from ecowatt_auth.accounts import excel
from ecowatt_auth.accounts import service as accounts
from ecowatt_auth.accounts.models import (
    PasswordReset,
    PasswordResetDone,
    RoleRead,
    UserCreate,
    UserCreated,
    UserRead,
    UserUpdate,
    user,
)
from ecowatt_auth.authz.roles import ROLES
from ecowatt_auth.runtime import AuthRuntime, Runtime, publish_audit

router = APIRouter(tags=["accounts"])
IsAdmin = require_roles(Role.ADMIN)
Admin = Annotated[Identity, IsAdmin]
_MAX_IMPORT_BYTES = 8 * 1024 * 1024
_MAX_IMPORT_ROWS = 5000
_XLSX: dict[int | str, dict[str, Any]] = {200: {"content": {XLSX_MEDIA_TYPE: {}}}}


def _attachment(data: bytes, filename: str) -> Response:
    return Response(
        data,
        media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _audit(
    request: Request,
    runtime: AuthRuntime,
    identity: Identity,
    action: str,
    user_id: str,
    **details: Any,
) -> None:
    await publish_audit(
        request,
        runtime,
        audit_event(
            request, identity=identity, action=action, resource=f"user:{user_id}", details=details
        ),
    )


@router.get(
    "/roles", summary="The roles and the data scopes each may have", response_model=list[RoleRead]
)
async def roles(_: CurrentIdentity) -> list[RoleRead]:
    return [
        RoleRead(
            role=d.role,
            name=d.name,
            name_en=d.name_en,
            description=d.description,
            scopes=list(d.scopes),
        )
        for d in ROLES.values()
        if d.for_accounts
    ]


def _filters(
    q: Annotated[
        str | None, Query(max_length=100, description="登录名、姓名、单位或手机号包含")
    ] = None,
    role: Annotated[Role | None, Query()] = None,
    status: Annotated[Literal["active", "disabled"] | None, Query()] = None,
    district: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
) -> dict[str, Any]:
    return {"q": q, "role": role, "status": status, "district": district}


Filters = Annotated[dict[str, Any], Depends(_filters)]


@router.get("/users", summary="Accounts, filtered and paginated", response_model=Page[UserRead])
async def list_users(
    _: Admin, db_session: DbSession, runtime: Runtime, page: PageParams, filters: Filters
) -> Page[UserRead]:
    rows, total = await fetch_page(db_session, accounts.list_query(**filters), page)
    return Page.of([accounts.to_read(r._mapping, runtime.policy) for r in rows], total, page)


@router.get("/users.xlsx", summary="Export the filtered accounts as Excel", responses=_XLSX)
async def export_users(
    _: Admin, db_session: DbSession, runtime: Runtime, filters: Filters
) -> Response:
    result = await db_session.execute(accounts.list_query(**filters).limit(50_000))
    users = [accounts.to_read(r, runtime.policy) for r in result.mappings()]
    data = await asyncio.to_thread(
        rows_to_xlsx, excel.EXPORT_COLUMNS, excel.export_rows(users), title="账号"
    )
    return _attachment(data, "accounts.xlsx")


@router.post("/users", summary="Open an account", status_code=201, response_model=UserCreated)
async def create_user(
    body: UserCreate, request: Request, identity: Admin, db_session: DbSession, runtime: Runtime
) -> UserCreated:
    """The user must change the initial password at first login; when it is omitted the
    server generates one and returns it here, once."""
    row, generated = await accounts.create_user(
        db_session, body=body, actor=identity.subject, policy=runtime.policy
    )
    await db_session.commit()
    await _audit(
        request,
        runtime,
        identity,
        "account.create",
        row["id"],
        username=row["username"],
        role=row["role"],
        scope=body.scope.model_dump(),
    )
    return UserCreated(
        **accounts.to_read(row, runtime.policy).model_dump(), initial_password=generated
    )


@router.get("/users/import/template", summary="The account import workbook", responses=_XLSX)
async def import_template(_: Admin) -> Response:
    return _attachment(await asyncio.to_thread(excel.template_bytes), "accounts-template.xlsx")


@router.post(
    "/users/import",
    summary="Open accounts from a workbook (all or nothing)",
    responses={200: {"content": {"application/json": {}, XLSX_MEDIA_TYPE: {}}}},
)
async def import_users(
    request: Request,
    identity: Admin,
    db_session: DbSession,
    runtime: Runtime,
    file: Annotated[UploadFile, File(description="The .xlsx workbook (sheet 账号)")],
    dry_run: bool = Query(False, description="Check every row, create nothing"),
    report: Literal["json", "xlsx"] = Query("json", description="xlsx: the error report"),
) -> Response:
    """Rows are checked like `POST /users`; any error (or a taken user name) creates nothing.
    Each account gets a generated initial password, returned once in the answer."""
    data = await file.read(_MAX_IMPORT_BYTES + 1)
    if len(data) > _MAX_IMPORT_BYTES:
        raise Problem("the workbook is larger than 8 MiB", status=413, type_suffix="too-large")
    try:
        workbook = await asyncio.to_thread(load_workbook_bytes, data)
        parsed = await asyncio.to_thread(read_sheet, workbook, excel.SHEET, excel.IMPORT_COLUMNS)
    except WorkbookError as exc:
        raise Problem(str(exc), status=422, type_suffix="invalid-workbook") from None
    if not parsed.present:
        raise Problem(
            f"the workbook has no sheet {excel.SHEET}", status=422, type_suffix="invalid-workbook"
        )
    if len(parsed.rows) > _MAX_IMPORT_ROWS:
        raise Problem(
            f"at most {_MAX_IMPORT_ROWS} rows per import", status=413, type_suffix="too-large"
        )
    rows, errors = excel.parse_rows(parsed)
    for number, body in rows:
        if await accounts.by_username(db_session, username=body.username) is not None:
            errors.append(CellError(excel.SHEET, number, "登录名", f"{body.username} 已存在"))
    created: list[dict[str, Any]] = []
    if not errors and not dry_run:
        for _, body in rows:
            row, generated = await accounts.create_user(
                db_session, body=body, actor=identity.subject, policy=runtime.policy
            )
            created.append(
                {"id": row["id"], "username": row["username"], "initial_password": generated}
            )
        await db_session.commit()
        await _audit(
            request,
            runtime,
            identity,
            "account.import",
            "*",
            created=[c["username"] for c in created],
        )
    else:
        await db_session.rollback()
    if report == "xlsx":
        return _attachment(
            await asyncio.to_thread(errors_to_xlsx, errors), "accounts-import-report.xlsx"
        )
    return JSONResponse(
        {
            "applied": bool(created),
            "dry_run": dry_run,
            "rows": len(rows) + len({e.row for e in errors if e.row > 1}),
            "created": created,
            "errors": [e.__dict__ for e in errors],
        },
        status_code=422 if errors else 200,
    )


@router.get("/users/{user_id}", summary="One account", response_model=UserRead)
async def read_user(user_id: str, _: Admin, db_session: DbSession, runtime: Runtime) -> UserRead:
    return accounts.to_read(await accounts.get_user(db_session, user_id=user_id), runtime.policy)


@router.patch(
    "/users/{user_id}",
    summary="Change an account (role, scope, status, details)",
    response_model=UserRead,
)
async def update_user(
    user_id: str,
    body: UserUpdate,
    request: Request,
    identity: Admin,
    db_session: DbSession,
    runtime: Runtime,
) -> UserRead:
    """A change of role, scope, status or expiry ends the person's sessions and tokens."""
    if user_id == identity.subject and (
        body.status == "disabled" or (body.role and body.role != Role.ADMIN)
    ):
        raise Problem("administrators cannot disable or demote themselves", status=409)
    row, access_changed = await accounts.update_user(
        db_session, user_id=user_id, body=body, actor=identity.subject
    )
    await db_session.commit()
    if access_changed:
        await runtime.sessions.end_user_access(user_id, row["not_before"])
    await _audit(
        request,
        runtime,
        identity,
        "account.update",
        user_id,
        username=row["username"],
        changed=sorted(body.model_dump(exclude_unset=True)),
        access_changed=access_changed,
    )
    return accounts.to_read(row, runtime.policy)


@router.post(
    "/users/{user_id}/reset-password",
    summary="Reset a password (the user must change it at next login)",
    response_model=PasswordResetDone,
)
async def reset_password(
    user_id: str,
    body: PasswordReset,
    request: Request,
    identity: Admin,
    db_session: DbSession,
    runtime: Runtime,
) -> PasswordResetDone:
    generated = await accounts.reset_password(
        db_session,
        user_id=user_id,
        password=body.password.get_secret_value() if body.password else None,
        actor=identity.subject,
        policy=runtime.policy,
    )
    await db_session.commit()
    row = await accounts.get_user(db_session, user_id=user_id)
    await runtime.sessions.end_user_access(user_id, row["not_before"])
    await _audit(
        request, runtime, identity, "account.reset-password", user_id, username=row["username"]
    )
    return PasswordResetDone(initial_password=generated)


@router.post("/users/{user_id}/unlock", summary="Lift a lockout", response_model=UserRead)
async def unlock(
    user_id: str, request: Request, identity: Admin, db_session: DbSession, runtime: Runtime
) -> UserRead:
    row = await accounts.unlock(db_session, user_id=user_id, actor=identity.subject)
    await db_session.commit()
    redis = runtime.context.redis
    await redis.delete(f"auth:lock:{row['username']}", f"auth:fail:{row['username']}")
    await _audit(request, runtime, identity, "account.unlock", user_id, username=row["username"])
    return accounts.to_read(row, runtime.policy)


@router.post(
    "/users/{user_id}/revoke-sessions",
    summary="End every session and token of an account now",
    response_model=UserRead,
)
async def revoke_sessions(
    user_id: str, request: Request, identity: Admin, db_session: DbSession, runtime: Runtime
) -> UserRead:
    now = datetime.now(UTC)
    await accounts.get_user(db_session, user_id=user_id)
    await db_session.execute(update(user).where(user.c.id == user_id).values(not_before=now))
    await db_session.commit()
    ended = await runtime.sessions.end_user_access(user_id, now)
    row = await accounts.get_user(db_session, user_id=user_id)
    await _audit(request, runtime, identity, "account.revoke-sessions", user_id, sessions=ended)
    return accounts.to_read(row, runtime.policy)


@router.post(
    "/users/{user_id}/totp/reset",
    summary="Remove an account's second factor (lost phone)",
    response_model=UserRead,
)
async def reset_totp(
    user_id: str, request: Request, identity: Admin, db_session: DbSession, runtime: Runtime
) -> UserRead:
    await accounts.get_user(db_session, user_id=user_id)
    await db_session.execute(
        update(user)
        .where(user.c.id == user_id)
        .values(
            totp_enabled=False, totp_secret=None, totp_last_step=None, updated_by=identity.subject
        )
    )
    await db_session.commit()
    row = await accounts.get_user(db_session, user_id=user_id)
    await _audit(
        request, runtime, identity, "account.totp-reset", user_id, username=row["username"]
    )
    return accounts.to_read(row, runtime.policy)
