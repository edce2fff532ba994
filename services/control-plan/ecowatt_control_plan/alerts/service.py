"""Alert orders: proposals, approvals (four eyes), applying them, and what they are now."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ecowatt_kernel.problems import Conflict, Forbidden, NotFound
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan.access import jsonable
from ecowatt_control_plan.alerts.models import alert_change, alert_order
from ecowatt_control_plan.measures import service as measures
from ecowatt_control_plan.tasks import service as tasks


def status_of(row: Any, now: datetime) -> str:
    """pending_approval, rejected, scheduled, active, ended or lifted — at `now`."""
    if row["state"] == "pending":
        return "pending_approval"
    if row["state"] == "rejected":
        return "rejected"
    lifted = row["lifted_at"]
    if lifted is not None and lifted <= now:
        return "lifted"
    end = tasks.order_end(row)
    if end is not None and end <= now:
        return "ended"
    if row["effective_at"] > now:
        return "scheduled"
    return "active"


async def load_order(session: AsyncSession, *, alert_id: str, lock: bool = False) -> dict[str, Any]:
    """One order, or 404."""
    query = select(alert_order).where(alert_order.c.id == alert_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"alert order {alert_id} not found")
    return dict(row)


async def propose_issue(
    session: AsyncSession, *, body: dict[str, Any], actor: str, now: datetime
) -> tuple[dict[str, Any], int]:
    """A new order waiting for approval, and its issue change."""
    alert_id = "A" + uuid.uuid4().hex[:12]
    issued_at = body.get("issued_at") or now
    await session.execute(
        alert_order.insert().values(
            id=alert_id,
            name=body["name"],
            origin=body["origin"],
            state="pending",
            level=body["level"],
            issued_at=issued_at,
            effective_at=body["effective_at"],
            expected_end=body.get("expected_end"),
            districts=body.get("districts") or [],
            notice=body.get("notice"),
            ramp_min=body.get("ramp_min"),
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
    )
    payload = jsonable({k: v for k, v in body.items() if k != "reason"} | {"issued_at": issued_at})
    change_id = await _propose(
        session,
        alert_id=alert_id,
        kind="issue",
        payload=payload,
        reason=body.get("reason"),
        actor=actor,
        now=now,
    )
    return await load_order(session, alert_id=alert_id), change_id


async def propose(
    session: AsyncSession,
    *,
    alert_id: str,
    kind: str,
    payload: dict[str, Any],
    reason: str | None,
    actor: str,
    now: datetime,
) -> int:
    """An amendment or lift of an approved order, waiting for approval."""
    order = await load_order(session, alert_id=alert_id, lock=True)
    if order["state"] != "approved":
        raise Conflict(f"alert order {alert_id} is not in force (state {order['state']})")
    if order["lifted_at"] is not None:
        raise Conflict(f"alert order {alert_id} has been lifted")
    end = tasks.order_end(order)
    if end is not None and end <= now:
        raise Conflict(f"alert order {alert_id} has already ended")
    pending = await session.scalar(
        select(func.count())
        .select_from(alert_change)
        .where(alert_change.c.alert_id == alert_id, alert_change.c.status == "pending")
    )
    if pending:
        raise Conflict(f"alert order {alert_id} already has a change waiting for approval")
    return await _propose(
        session,
        alert_id=alert_id,
        kind=kind,
        payload=jsonable(payload),
        reason=reason,
        actor=actor,
        now=now,
    )


async def _propose(
    session: AsyncSession,
    *,
    alert_id: str,
    kind: str,
    payload: dict[str, Any],
    reason: str | None,
    actor: str,
    now: datetime,
) -> int:
    change_id = await session.scalar(
        alert_change.insert()
        .values(
            alert_id=alert_id,
            kind=kind,
            payload=payload,
            reason=reason,
            proposed_by=actor,
            proposed_at=now,
            status="pending",
        )
        .returning(alert_change.c.id)
    )
    await _touch(session, alert_id=alert_id, now=now)
    return int(change_id or 0)


async def load_change(
    session: AsyncSession, *, alert_id: str, change_id: int, lock: bool = False
) -> dict[str, Any]:
    query = select(alert_change).where(
        alert_change.c.id == change_id, alert_change.c.alert_id == alert_id
    )
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"change {change_id} of alert order {alert_id} not found")
    return dict(row)


async def decide(
    session: AsyncSession,
    *,
    alert_id: str,
    change_id: int,
    approve: bool,
    actor: str,
    note: str | None,
    now: datetime,
    four_eyes: bool,
    view: RegistryView,
    tasks_topic: str,
) -> tuple[dict[str, Any], tasks.Result | None]:
    """Approve (apply and decompose) or reject a pending change."""
    order = await load_order(session, alert_id=alert_id, lock=True)
    change = await load_change(session, alert_id=alert_id, change_id=change_id, lock=True)
    if change["status"] != "pending":
        raise Conflict(f"change {change_id} was already {change['status']}")
    if four_eyes and change["proposed_by"] == actor:
        raise Forbidden("the person who proposed a change cannot approve or reject it")
    result = None
    before = jsonable(_public(order))
    if approve:
        values = await _applied(session, order=order, change=change, now=now)
        await session.execute(
            alert_order.update().where(alert_order.c.id == alert_id).values(**values)
        )
        result = await tasks.decompose(
            session,
            view=view,
            now=now,
            topic=tasks_topic,
            reason=_reason(change),
        )
    elif change["kind"] == "issue":
        await session.execute(
            alert_order.update().where(alert_order.c.id == alert_id).values(state="rejected")
        )
    await _touch(session, alert_id=alert_id, now=now)
    after = jsonable(_public(await load_order(session, alert_id=alert_id)))
    await session.execute(
        alert_change.update()
        .where(alert_change.c.id == change_id)
        .values(
            status="approved" if approve else "rejected",
            decided_by=actor,
            decided_at=now,
            note=note,
            before=before,
            after=after,
        )
    )
    return after, result


async def withdraw(
    session: AsyncSession, *, alert_id: str, change_id: int, actor: str, now: datetime
) -> None:
    """The proposer takes back a pending change."""
    change = await load_change(session, alert_id=alert_id, change_id=change_id, lock=True)
    if change["status"] != "pending":
        raise Conflict(f"change {change_id} was already {change['status']}")
    if change["proposed_by"] != actor:
        raise Forbidden("only the proposer can withdraw a change")
    await session.execute(
        alert_change.update()
        .where(alert_change.c.id == change_id)
        .values(status="withdrawn", decided_by=actor, decided_at=now)
    )
    if change["kind"] == "issue":
        await session.execute(
            alert_order.update().where(alert_order.c.id == alert_id).values(state="rejected")
        )


def _reason(change: dict[str, Any]) -> str:
    label = {"issue": "预警发布", "amend": "预警调整", "lift": "预警解除"}[change["kind"]]
    return f"{label}（变更 {change['id']}）" + (f"：{change['reason']}" if change["reason"] else "")


def _public(order: dict[str, Any]) -> dict[str, Any]:
    keys = ("state", "level", "effective_at", "expected_end", "lifted_at", "districts", "segments")
    return {k: order[k] for k in keys}


async def _applied(
    session: AsyncSession, *, order: dict[str, Any], change: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The order's new values once `change` applies (409 when it no longer can)."""
    payload = change["payload"]
    version = await measures.current_version(session)
    if change["kind"] == "issue":
        return {
            "state": "approved",
            "segments": [
                {
                    "from": order["effective_at"].isoformat(),
                    "level": order["level"],
                    "districts": list(order["districts"]),
                }
            ],
            "list_version": version,
        }
    if order["state"] != "approved" or order["lifted_at"] is not None:
        raise Conflict("the order is no longer in force")
    end = tasks.order_end(order)
    if change["kind"] == "lift":
        lifted = _time(payload.get("lifted_at")) or now
        return {"lifted_at": max(lifted, order["issued_at"])}
    start = max(_time(payload.get("effective_at")) or now, order["effective_at"])
    expected_end = _time(payload.get("expected_end")) or order["expected_end"]
    if expected_end is not None and expected_end <= order["effective_at"]:
        raise Conflict("the new expected end is before the order takes effect")
    if end is not None and start >= end and _time(payload.get("expected_end")) is None:
        raise Conflict("the amendment would take effect after the order ends")
    segments = [s for s in order["segments"] if datetime.fromisoformat(s["from"]) < start]
    last = segments[-1] if segments else order["segments"][0]
    segments.append(
        {
            "from": start.isoformat(),
            "level": payload.get("level") or last["level"],
            "districts": payload["districts"]
            if payload.get("districts") is not None
            else last["districts"],
        }
    )
    return {
        "segments": segments,
        "level": segments[-1]["level"],
        "districts": segments[-1]["districts"],
        "expected_end": expected_end,
        "notice": payload.get("notice") or order["notice"],
        "list_version": version,
    }


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


async def _touch(session: AsyncSession, *, alert_id: str, now: datetime) -> None:
    await session.execute(
        alert_order.update()
        .where(alert_order.c.id == alert_id)
        .values(updated_at=now, revision=alert_order.c.revision + 1)
    )
