"""Alert-order endpoints: propose (issue, amend, lift), approve or reject, read; all audited."""

from __future__ import annotations

from typing import Any, Literal

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity, Identity
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import Conflict, Forbidden
from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan import access
from ecowatt_control_plan.alerts import service
from ecowatt_control_plan.alerts.models import (
    AlertAmend,
    AlertDetail,
    AlertIssue,
    AlertLift,
    AlertRead,
    ChangeRead,
    Decision,
    alert_change,
    alert_order,
)
from ecowatt_control_plan.runtime import CurrentRuntime, Runtime, require_archive
from ecowatt_control_plan.tasks.models import task

router = APIRouter(prefix="/alerts", tags=["alert orders"])


class DecisionResult(BaseModel):
    alert: AlertDetail
    tasks: dict[str, int]


def _read(row: Any, runtime: Runtime, pending: int = 0) -> AlertRead:
    return AlertRead.model_validate(
        dict(row) | {"status": service.status_of(row, runtime.now()), "pending_changes": pending}
    )


async def _detail(db_session: AsyncSession, runtime: Runtime, alert_id: str) -> AlertDetail:
    order = await service.load_order(db_session, alert_id=alert_id)
    changes = [
        ChangeRead.model_validate(dict(r))
        for r in (
            await db_session.execute(
                select(alert_change)
                .where(alert_change.c.alert_id == alert_id)
                .order_by(alert_change.c.id)
            )
        ).mappings()
    ]
    counts = {
        str(change): int(n)
        for change, n in (
            await db_session.execute(
                select(task.c.change, func.count())
                .where(task.c.alert_id == alert_id)
                .group_by(task.c.change)
            )
        ).all()
    }
    pending = sum(1 for c in changes if c.status == "pending")
    base = _read(order, runtime, pending)
    return AlertDetail.model_validate(
        base.model_dump() | {"changes": changes, "task_counts": counts}
    )


async def _audit(
    db_session: AsyncSession,
    runtime: Runtime,
    identity: Identity,
    request: Request,
    action: str,
    alert_id: str,
    details: dict[str, Any],
) -> None:
    await runtime.audit(
        db_session,
        identity=identity,
        action=f"control_plan.alert.{action}",
        resource=f"alert:{alert_id}",
        details=details,
        request=request,
    )


@router.get("", summary="Alert orders, newest first (every signed-in user sees them)")
async def list_alerts(
    db_session: DbSession,
    runtime: CurrentRuntime,
    _: CurrentIdentity,
    page: PageParams,
    state: Literal["pending", "approved", "rejected"] | None = None,
) -> Page[AlertRead]:
    query = select(alert_order).order_by(alert_order.c.issued_at.desc(), alert_order.c.id)
    if state:
        query = query.where(alert_order.c.state == state)
    rows, total = await fetch_page(db_session, query, page)
    return Page[AlertRead].of([_read(r._mapping, runtime) for r in rows], total, page)


@router.post(
    "",
    status_code=201,
    summary="Propose a new alert order (takes effect once a bureau role approves it)",
    dependencies=[access.CanProposeOrders],
)
async def issue(
    body: AlertIssue,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> AlertDetail:
    order, change_id = await service.propose_issue(
        db_session,
        body=body.model_dump(),
        actor=access.actor_of(identity),
        now=runtime.now(),
    )
    await _audit(
        db_session,
        runtime,
        identity,
        request,
        "propose_issue",
        order["id"],
        {"change_id": change_id, **body.model_dump(mode="json")},
    )
    await runtime.commit(db_session)
    return await _detail(db_session, runtime, order["id"])


@router.get("/{alert_id}", summary="One order: its segments, changes and task counts")
async def read_alert(
    alert_id: str, db_session: DbSession, runtime: CurrentRuntime, _: CurrentIdentity
) -> AlertDetail:
    return await _detail(db_session, runtime, alert_id)


@router.post(
    "/{alert_id}/amend",
    status_code=201,
    summary="Propose raising or lowering the level, or changing districts or the end",
    dependencies=[access.CanProposeOrders],
)
async def amend(
    alert_id: str,
    body: AlertAmend,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> ChangeRead:
    payload = body.model_dump(exclude={"reason"}, exclude_none=True)
    return await _proposed(
        db_session, runtime, identity, request, alert_id, "amend", payload, body.reason
    )


@router.post(
    "/{alert_id}/lift",
    status_code=201,
    summary="Propose lifting the order",
    dependencies=[access.CanProposeOrders],
)
async def lift(
    alert_id: str,
    body: AlertLift,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> ChangeRead:
    payload = body.model_dump(exclude={"reason"}, exclude_none=True)
    return await _proposed(
        db_session, runtime, identity, request, alert_id, "lift", payload, body.reason
    )


async def _proposed(
    db_session: AsyncSession,
    runtime: Runtime,
    identity: Identity,
    request: Request,
    alert_id: str,
    kind: str,
    payload: dict[str, Any],
    reason: str | None,
) -> ChangeRead:
    change_id = await service.propose(
        db_session,
        alert_id=alert_id,
        kind=kind,
        payload=payload,
        reason=reason,
        actor=access.actor_of(identity),
        now=runtime.now(),
    )
    await _audit(
        db_session,
        runtime,
        identity,
        request,
        f"propose_{kind}",
        alert_id,
        {"change_id": change_id, "payload": payload, "reason": reason},
    )
    await runtime.commit(db_session)
    change = await service.load_change(db_session, alert_id=alert_id, change_id=change_id)
    return ChangeRead.model_validate(change)


@router.post(
    "/{alert_id}/changes/{change_id}/approve",
    summary="Approve a proposed change: it applies and the tasks are (re)issued",
    dependencies=[access.CanApproveOrders],
)
async def approve(
    alert_id: str,
    change_id: int,
    body: Decision,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> DecisionResult:
    return await _decide(db_session, runtime, identity, request, alert_id, change_id, body, True)


@router.post(
    "/{alert_id}/changes/{change_id}/reject",
    summary="Reject a proposed change",
    dependencies=[access.CanApproveOrders],
)
async def reject(
    alert_id: str,
    change_id: int,
    body: Decision,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> DecisionResult:
    return await _decide(db_session, runtime, identity, request, alert_id, change_id, body, False)


@router.post(
    "/{alert_id}/changes/{change_id}/withdraw",
    summary="Withdraw your own pending change",
    dependencies=[access.CanProposeOrders],
)
async def withdraw(
    alert_id: str,
    change_id: int,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> AlertDetail:
    await service.withdraw(
        db_session,
        alert_id=alert_id,
        change_id=change_id,
        actor=access.actor_of(identity),
        now=runtime.now(),
    )
    await _audit(
        db_session, runtime, identity, request, "withdraw", alert_id, {"change_id": change_id}
    )
    await runtime.commit(db_session)
    return await _detail(db_session, runtime, alert_id)


async def _decide(
    db_session: AsyncSession,
    runtime: Runtime,
    identity: Identity,
    request: Request,
    alert_id: str,
    change_id: int,
    body: Decision,
    approve_it: bool,
) -> DecisionResult:
    action = "approve" if approve_it else "reject"
    require_archive(runtime)
    try:
        _, result = await service.decide(
            db_session,
            alert_id=alert_id,
            change_id=change_id,
            approve=approve_it,
            actor=access.actor_of(identity),
            note=body.note,
            now=runtime.now(),
            four_eyes=runtime.settings.control_plan_require_second_approver,
            view=runtime.view,
            tasks_topic=runtime.settings.control_plan_tasks_topic,
        )
    except (Forbidden, Conflict) as exc:
        # A refused decision is audited too (nothing else of it is written).
        await db_session.rollback()
        await runtime.audit(
            db_session,
            identity=identity,
            action=f"control_plan.alert.{action}",
            resource=f"alert:{alert_id}",
            details={"change_id": change_id, "refused": exc.detail},
            request=request,
            outcome="denied" if isinstance(exc, Forbidden) else "failed",
        )
        await runtime.commit(db_session)
        raise
    counts = result.counts() if result is not None else {}
    await _audit(
        db_session,
        runtime,
        identity,
        request,
        action,
        alert_id,
        {"change_id": change_id, "note": body.note, "tasks": counts},
    )
    await runtime.commit(db_session)
    return DecisionResult(alert=await _detail(db_session, runtime, alert_id), tasks=counts)
