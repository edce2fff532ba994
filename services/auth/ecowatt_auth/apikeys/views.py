"""API key administration (administrators); the key text is in the answer once."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.audit import audit_event
from ecowatt_kernel.identity import Identity, Role, require_roles
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from ecowatt_auth.apikeys import service as keys
from ecowatt_auth.apikeys.models import (
    ApiKeyCreate,
    ApiKeyIssued,
    ApiKeyRead,
    ApiKeyUpdate,
    Rotation,
    api_key,
)
from ecowatt_auth.gateway.limits import quota_used
from ecowatt_auth.runtime import AuthRuntime, Runtime, publish_audit

router = APIRouter(tags=["API keys"])
Admin = Annotated[Identity, require_roles(Role.ADMIN)]


async def _audit(
    request: Request,
    runtime: AuthRuntime,
    identity: Identity,
    action: str,
    key_id: str,
    **details: object,
) -> None:
    await publish_audit(
        request,
        runtime,
        audit_event(
            request, identity=identity, action=action, resource=f"api-key:{key_id}", details=details
        ),
    )


@router.get("/api-keys", summary="API keys, newest first", response_model=Page[ApiKeyRead])
async def list_keys(
    _: Admin,
    db_session: DbSession,
    page: PageParams,
    status: Annotated[Literal["active", "revoked"] | None, Query()] = None,
) -> Page[ApiKeyRead]:
    query = select(api_key).order_by(api_key.c.created_at.desc(), api_key.c.id)
    if status:
        query = query.where(api_key.c.status == status)
    rows, total = await fetch_page(db_session, query, page)
    return Page.of([keys.to_read(r._mapping) for r in rows], total, page)


@router.post(
    "/api-keys",
    summary="Issue an API key (the key is shown once)",
    status_code=201,
    response_model=ApiKeyIssued,
)
async def create_key(
    body: ApiKeyCreate, request: Request, identity: Admin, db_session: DbSession, runtime: Runtime
) -> ApiKeyIssued:
    settings = runtime.settings
    row, text = await keys.create_key(
        db_session,
        body=body,
        actor=identity.subject,
        default_rate=settings.auth_api_key_rate_per_minute,
        default_quota=settings.auth_api_key_quota_per_day,
    )
    await db_session.commit()
    await _audit(
        request,
        runtime,
        identity,
        "api-key.create",
        row["id"],
        name=row["name"],
        datasets=list(row["datasets"]),
    )
    return ApiKeyIssued(**keys.to_read(row).model_dump(), key=text)


@router.get("/api-keys/{key_id}", summary="One API key with today's use", response_model=ApiKeyRead)
async def read_key(key_id: str, _: Admin, db_session: DbSession, runtime: Runtime) -> ApiKeyRead:
    row = await keys.get_key(db_session, key_id=key_id)
    used = await quota_used(runtime.context.redis, key_id, runtime.settings.timezone)
    return keys.to_read(row, used_today=used)


@router.patch(
    "/api-keys/{key_id}",
    summary="Change a key's scope, limits or expiry",
    response_model=ApiKeyRead,
)
async def update_key(
    key_id: str,
    body: ApiKeyUpdate,
    request: Request,
    identity: Admin,
    db_session: DbSession,
    runtime: Runtime,
) -> ApiKeyRead:
    row = await keys.update_key(db_session, key_id=key_id, body=body, actor=identity.subject)
    await db_session.commit()
    await keys.forget(runtime.context.redis, key_id)
    await _audit(
        request,
        runtime,
        identity,
        "api-key.update",
        key_id,
        changed=sorted(body.model_dump(exclude_unset=True)),
    )
    return keys.to_read(row)


@router.post(
    "/api-keys/{key_id}/rotate",
    summary="Rotate: a new key now, the old one ends after a grace period",
    response_model=ApiKeyIssued,
)
async def rotate_key(
    key_id: str,
    body: Rotation,
    request: Request,
    identity: Admin,
    db_session: DbSession,
    runtime: Runtime,
) -> ApiKeyIssued:
    row, text = await keys.rotate_key(
        db_session, key_id=key_id, grace=timedelta(hours=body.grace_hours), actor=identity.subject
    )
    await db_session.commit()
    await keys.forget(runtime.context.redis, key_id)
    await _audit(
        request,
        runtime,
        identity,
        "api-key.rotate",
        key_id,
        new_key=row["id"],
        grace_hours=body.grace_hours,
    )
    return ApiKeyIssued(**keys.to_read(row).model_dump(), key=text)


@router.post("/api-keys/{key_id}/revoke", summary="Revoke a key now", response_model=ApiKeyRead)
async def revoke_key(
    key_id: str, request: Request, identity: Admin, db_session: DbSession, runtime: Runtime
) -> ApiKeyRead:
    row = await keys.revoke_key(db_session, key_id=key_id, actor=identity.subject)
    await db_session.commit()
    await keys.forget(runtime.context.redis, key_id)
    await _audit(request, runtime, identity, "api-key.revoke", key_id)
    return keys.to_read(row)
