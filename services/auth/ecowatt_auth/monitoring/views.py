"""Security alerts: list, export, read with the journal, handle; the rule catalogue."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.audit import audit_event
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE, Column, rows_to_xlsx
from ecowatt_kernel.identity import Identity, Role, require_roles
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import Conflict, NotFound
from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import Select, select

from ecowatt_auth.audit.views import printable
from ecowatt_auth.monitoring.models import (
    AlertAction,
    Handling,
    RuleInfo,
    SecurityAlert,
    SecurityAlertDetail,
    security_alert,
    security_alert_action,
)
from ecowatt_auth.monitoring.service import RULES, handle_alert, rule_catalogue
from ecowatt_auth.runtime import Runtime, publish_audit

router = APIRouter(tags=["security monitoring"])
Security = Annotated[Identity, require_roles(Role.AUDITOR)]

_STATUS = {
    "open": "待处置",
    "acknowledged": "处置中",
    "resolved": "已处置",
    "false_positive": "误报",
}
_SEVERITY = {"low": "低", "medium": "中", "high": "高"}
EXPORT_COLUMNS = (
    Column("first_seen", "首次发生", width=20),
    Column("last_seen", "最近发生", width=20),
    Column("rule_name", "规则", width=16),
    Column("severity", "级别", width=6),
    Column("title", "告警", width=40),
    Column("subject", "对象", width=30),
    Column("count", "次数", width=8),
    Column("status", "状态", width=8),
    Column("handled_by", "处置人", width=34),
    Column("handled_at", "处置时间", width=20),
    Column("note", "处置说明", width=40),
)


def _alert(row: Any) -> SecurityAlert:
    data = dict(row)
    spec = RULES.get(data["rule"])
    return SecurityAlert(**data, rule_name=spec.name if spec else data["rule"])


def _filters(
    status: Annotated[
        Literal["open", "acknowledged", "resolved", "false_positive"] | None, Query()
    ] = None,
    severity: Annotated[Literal["low", "medium", "high"] | None, Query()] = None,
    rule: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
) -> Select[Any]:
    c = security_alert.c
    query = select(security_alert)
    if status:
        query = query.where(c.status == status)
    if severity:
        query = query.where(c.severity == severity)
    if rule:
        query = query.where(c.rule == rule)
    if since:
        query = query.where(c.last_seen >= since)
    if until:
        query = query.where(c.first_seen < until)
    return query.order_by(c.last_seen.desc(), c.id)


Filtered = Annotated[Select[Any], Depends(_filters)]


@router.get(
    "/security-alerts", summary="Security alerts, newest first", response_model=Page[SecurityAlert]
)
async def list_alerts(
    _: Security, db_session: DbSession, page: PageParams, query: Filtered
) -> Page[SecurityAlert]:
    rows, total = await fetch_page(db_session, query, page)
    return Page.of([_alert(r._mapping) for r in rows], total, page)


@router.get(
    "/security-alerts.xlsx",
    summary="Export the filtered security alerts as Excel",
    responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
)
async def export_alerts(
    _: Security, db_session: DbSession, runtime: Runtime, query: Filtered
) -> Response:
    zone = ZoneInfo(runtime.settings.timezone)
    rows = []
    for row in (await db_session.execute(query.limit(50_000))).mappings():
        alert = _alert(row)
        rows.append(
            {
                **{k: printable(v) for k, v in alert.model_dump().items()},
                "first_seen": alert.first_seen.astimezone(zone),
                "last_seen": alert.last_seen.astimezone(zone),
                "handled_at": alert.handled_at.astimezone(zone) if alert.handled_at else None,
                "status": _STATUS[alert.status],
                "severity": _SEVERITY[alert.severity],
            }
        )
    data = await asyncio.to_thread(rows_to_xlsx, EXPORT_COLUMNS, rows, title="安全告警")
    return Response(
        data,
        media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": 'attachment; filename="security-alerts.xlsx"'},
    )


async def _detail(db_session: DbSession, alert_id: str) -> SecurityAlertDetail:
    row = (
        (await db_session.execute(select(security_alert).where(security_alert.c.id == alert_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"security alert {alert_id} not found")
    journal = (
        await db_session.execute(
            select(security_alert_action)
            .where(security_alert_action.c.alert_id == alert_id)
            .order_by(security_alert_action.c.id)
        )
    ).mappings()
    return SecurityAlertDetail(
        **_alert(row).model_dump(), journal=[AlertAction.model_validate(dict(j)) for j in journal]
    )


@router.get(
    "/security-alerts/{alert_id}",
    summary="One security alert with its journal",
    response_model=SecurityAlertDetail,
)
async def read_alert(alert_id: str, _: Security, db_session: DbSession) -> SecurityAlertDetail:
    return await _detail(db_session, alert_id)


@router.post(
    "/security-alerts/{alert_id}/handle",
    summary="Handle a security alert (acknowledge, resolve, mark a false positive)",
    response_model=SecurityAlertDetail,
)
async def handle(
    alert_id: str,
    body: Handling,
    request: Request,
    identity: Security,
    db_session: DbSession,
    runtime: Runtime,
) -> SecurityAlertDetail:
    current = await _detail(db_session, alert_id)
    if current.status in ("resolved", "false_positive"):
        raise Conflict(f"the alert is already {current.status}")
    await handle_alert(
        db_session, alert_id=alert_id, status=body.status, note=body.note, actor=identity.subject
    )
    await db_session.commit()
    await publish_audit(
        request,
        runtime,
        audit_event(
            request,
            identity=identity,
            action="security-alert.handle",
            resource=f"security-alert:{alert_id}",
            details={"status": body.status, "rule": current.rule},
        ),
    )
    return await _detail(db_session, alert_id)


@router.get(
    "/security-rules",
    summary="The monitoring rules and their thresholds",
    response_model=list[RuleInfo],
)
async def rules(_: Security, runtime: Runtime) -> list[RuleInfo]:
    return rule_catalogue(runtime.settings)
