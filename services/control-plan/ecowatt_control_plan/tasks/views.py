"""Task endpoints: an enterprise's measures for an order, in scope; history; Excel."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import Column, rows_to_xlsx
from ecowatt_kernel.identity import CurrentScope
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import NotFound
from fastapi import APIRouter, Query, Response
from sqlalchemy import Select, or_, select

from ecowatt_control_plan import access
from ecowatt_control_plan.measures.models import ACTION_ZH, LEVEL_ZH, TARGET_ZH
from ecowatt_control_plan.measures.views import attachment
from ecowatt_control_plan.tasks.models import (
    TaskDetail,
    TaskHistoryRead,
    TaskRead,
    task,
    task_history,
)

router = APIRouter(prefix="/tasks", tags=["tasks"])


def _filtered(
    scope: Any,
    alert_id: str | None,
    enterprise_id: str | None,
    district: str | None,
    level: str | None,
    at: datetime | None,
) -> Select[Any]:
    query = select(task).where(access.visible(scope, task))
    if alert_id:
        query = query.where(task.c.alert_id == alert_id)
    if enterprise_id:
        query = query.where(task.c.enterprise_id == enterprise_id)
    if district:
        query = query.where(task.c.district_code == district)
    if level:
        query = query.where(task.c.level == level)
    if at:
        query = query.where(
            task.c.valid_from <= at, or_(task.c.valid_to.is_(None), task.c.valid_to > at)
        )
    return query.order_by(task.c.valid_from.desc(), task.c.enterprise_id, task.c.task_id)


@router.get("", summary="Tasks in your scope (an enterprise user: their own)")
async def list_tasks(
    db_session: DbSession,
    scope: CurrentScope,
    page: PageParams,
    alert_id: str | None = None,
    enterprise_id: str | None = None,
    district: str | None = None,
    level: str | None = None,
    at: Annotated[datetime | None, Query(description="Only tasks in force at this time")] = None,
) -> Page[TaskRead]:
    query = _filtered(scope, alert_id, enterprise_id, district, level, at)
    rows, total = await fetch_page(db_session, query, page)
    return Page[TaskRead].of([TaskRead.model_validate(dict(r._mapping)) for r in rows], total, page)


_COLUMNS = (
    Column("enterprise_name", "企业名称", width=28),
    Column("enterprise_id", "企业编号", width=20),
    Column("district_code", "区县代码", width=10),
    Column("level", "预警级别", width=10),
    Column("valid_from", "开始时间", width=18),
    Column("valid_to", "结束时间", width=18),
    Column("action", "措施", width=12),
    Column("target", "对象", width=30),
    Column("detail", "要求", width=30),
    Column("effective_at", "核查起始时间", width=18),
    Column("legal_text", "告知文本", width=40),
)


@router.get("/export.xlsx", summary="Tasks and their measures as Excel", response_class=Response)
async def export_tasks(
    db_session: DbSession,
    scope: CurrentScope,
    alert_id: str | None = None,
    district: str | None = None,
    at: datetime | None = None,
) -> Response:
    query = _filtered(scope, alert_id, None, district, None, at)
    rows = []
    for t in (await db_session.execute(query)).mappings():
        for m in t["measures"]:
            rows.append(
                {
                    "enterprise_name": t["enterprise_name"],
                    "enterprise_id": t["enterprise_id"],
                    "district_code": t["district_code"],
                    "level": LEVEL_ZH.get(t["level"], t["level"]),
                    "valid_from": t["valid_from"],
                    "valid_to": t["valid_to"],
                    "action": ACTION_ZH.get(m["action"], "治污设施保持运行"),
                    "target": TARGET_ZH.get(m["target_kind"], m["target_kind"])
                    + (
                        ""
                        if m["target_kind"] == "enterprise"
                        else "：" + "、".join(m["target_ids"])
                    ),
                    "detail": describe(m),
                    "effective_at": datetime.fromisoformat(m["effective_at"]),
                    "legal_text": m.get("legal_text"),
                }
            )
    return attachment(rows_to_xlsx(_COLUMNS, rows, title="管控任务"), "control-tasks.xlsx")


def describe(m: dict[str, Any]) -> str:
    """A measure's requirement in words (Chinese)."""
    if m.get("reduction_pct") is not None:
        return f"较基线减少 {m['reduction_pct']:g}%"
    if m.get("allowed_load_pct") is not None:
        return f"负荷不超过额定功率的 {m['allowed_load_pct']:g}%"
    if m.get("windows"):
        return "错峰时段停产：" + "、".join(f"{w['start']}-{w['end']}" for w in m["windows"])
    if m["action"] == "EXEMPT":
        return f"豁免：{m.get('exempt_reason') or ''}"
    if m["action"] == "KEEP_CONTROL_RUNNING":
        return "治污设施与生产设施同步运行"
    return "停止生产"


@router.get("/{task_id}", summary="One task with its history")
async def read_task(task_id: str, db_session: DbSession, scope: CurrentScope) -> TaskDetail:
    row = (
        (
            await db_session.execute(
                select(task).where(task.c.task_id == task_id, access.visible(scope, task))
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"task {task_id} not found")
    history = (
        await db_session.execute(
            select(task_history)
            .where(task_history.c.task_id == task_id)
            .order_by(task_history.c.revision)
        )
    ).mappings()
    return TaskDetail.model_validate(
        dict(row) | {"history": [TaskHistoryRead.model_validate(dict(h)) for h in history]}
    )
