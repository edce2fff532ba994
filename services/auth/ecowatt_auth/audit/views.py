"""Reading the audit log: search with filters, one entry, Excel export, chain check."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE, Column, rows_to_xlsx
from ecowatt_kernel.identity import Identity, Role, require_roles
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import NotFound
from fastapi import APIRouter, Depends, Query, Response
from fastapi import Path as FastPath
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from sqlalchemy import select

from ecowatt_auth.audit import service
from ecowatt_auth.audit.models import AuditRecord, ChainCheck, audit_log
from ecowatt_auth.runtime import Runtime

router = APIRouter(tags=["audit"])


def printable(value: Any) -> Any:
    """Text without the control characters a worksheet cannot hold (a logged path may carry
    anything a client sent)."""
    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value) if isinstance(value, str) else value


Security = Annotated[Identity, require_roles(Role.AUDITOR)]

_OUTCOME = {"success": "成功", "denied": "拒绝", "failed": "失败"}
_KIND = {
    "user": "用户",
    "api_key": "API 密钥",
    "service": "服务",
    "device": "设备",
    "anonymous": "匿名",
}
EXPORT_COLUMNS = (
    Column("seq", "序号", width=10),
    Column("at", "时间", width=20),
    Column("actor", "操作人", width=34),
    Column("name", "姓名", width=12),
    Column("kind", "类型", width=10),
    Column("action", "操作", width=40),
    Column("resource", "对象", width=40),
    Column("outcome", "结果", width=8),
    Column("status", "状态码", width=8),
    Column("source_ip", "来源地址", width=16),
    Column("details", "详情", width=60),
    Column("trace_id", "追踪号", width=34),
    Column("hash", "哈希", width=66),
)


def _filters(
    actor: Annotated[
        str | None, Query(max_length=200, description="操作人 (user id, key id, user name)")
    ] = None,
    action: Annotated[
        str | None, Query(max_length=200, description="操作 (prefix), e.g. auth.login or POST")
    ] = None,
    outcome: Annotated[Literal["success", "denied", "failed"] | None, Query()] = None,
    resource: Annotated[str | None, Query(max_length=300, description="对象 (prefix)")] = None,
    source_ip: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(alias="from", description="from (inclusive)")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="to (exclusive)")] = None,
    q: Annotated[str | None, Query(max_length=200, description="text in the details")] = None,
) -> dict[str, Any]:
    return {
        "actor": actor,
        "action": action,
        "outcome": outcome,
        "resource": resource,
        "source_ip": source_ip,
        "since": since,
        "until": until,
        "q": q,
    }


Filters = Annotated[dict[str, Any], Depends(_filters)]


@router.get(
    "/audit", summary="Search the audit log, newest first", response_model=Page[AuditRecord]
)
async def search(
    _: Security, db_session: DbSession, page: PageParams, filters: Filters
) -> Page[AuditRecord]:
    rows, total = await fetch_page(db_session, service.search_query(**filters), page)
    return Page.of([AuditRecord.model_validate(dict(r._mapping)) for r in rows], total, page)


@router.get(
    "/audit.xlsx",
    summary="Export the filtered audit log as Excel",
    responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
)
async def export(
    _: Security, db_session: DbSession, runtime: Runtime, filters: Filters
) -> Response:
    """At most `ECOWATT_AUTH_AUDIT_EXPORT_MAX_ROWS` rows (newest first); narrow the period for
    more."""
    limit = runtime.settings.auth_audit_export_max_rows
    result = await db_session.execute(service.search_query(**filters).limit(limit))
    zone = ZoneInfo(runtime.settings.timezone)
    rows = [
        {
            **{k: printable(v) for k, v in dict(r).items()},
            "at": r["at"].astimezone(zone),
            "name": (r["details"] or {}).get("name"),
            "kind": _KIND.get(r["actor_kind"], r["actor_kind"]),
            "outcome": _OUTCOME.get(r["outcome"], r["outcome"]),
            "status": (r["details"] or {}).get("status"),
            "details": printable(
                json.dumps(r["details"], ensure_ascii=False, sort_keys=True)[:2000]
            ),
        }
        for r in result.mappings()
    ]
    data = await asyncio.to_thread(rows_to_xlsx, EXPORT_COLUMNS, rows, title="审计日志")
    return Response(
        data,
        media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": 'attachment; filename="audit-log.xlsx"'},
    )


@router.get(
    "/audit/verify", summary="Check the hash chain of the whole log", response_model=ChainCheck
)
async def verify(_: Security, db_session: DbSession) -> ChainCheck:
    """Recomputes every hash; `ok: false` names the first row that was changed, inserted or
    removed behind the database's back."""
    return await service.verify_chain(db_session)


@router.get("/audit/{seq}", summary="One audit entry", response_model=AuditRecord)
async def read_one(
    seq: Annotated[int, FastPath(ge=1, le=2**62)], _: Security, db_session: DbSession
) -> AuditRecord:
    row = (
        (await db_session.execute(select(audit_log).where(audit_log.c.seq == seq)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"audit entry {seq} not found")
    return AuditRecord.model_validate(dict(row))
