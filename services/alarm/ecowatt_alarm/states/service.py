"""Point and facility states, their history, and thresholds as the engine resolved them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ecowatt_kernel.identity import Identity
from ecowatt_kernel.pagination import Page, PageRequest, fetch_page
from ecowatt_kernel.problems import NotFound
from ecowatt_kernel.registry_view import RegistryView
from pydantic import AwareDatetime
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_alarm import tables as T
from ecowatt_alarm.processor import AlarmProcessor

__all__ = ["current_states", "state_history", "thresholds"]


def _visible(view: RegistryView, identity: Identity, enterprise_id: str) -> bool:
    enterprise = view.enterprise(enterprise_id)
    return enterprise is not None and identity.scope.allows(
        district=enterprise.district_code, enterprise_id=enterprise_id
    )


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def current_states(
    *, processor: AlarmProcessor, view: RegistryView, identity: Identity, enterprise_id: str
) -> dict[str, Any]:
    """The engine's current point and facility states of one enterprise in scope."""
    if not _visible(view, identity, enterprise_id):
        raise NotFound(f"enterprise {enterprise_id} not found")
    rt = processor.runtimes.get(enterprise_id)
    return {
        "enterprise_id": enterprise_id,
        "power_loss": bool(rt and rt.power_loss.get("on")),
        "points": {
            k: {
                "state": v.get("state"),
                "since": _iso(v.get("since")),
                "power_kw": v.get("last_p"),
                "last_data": _iso(v.get("last_t")),
            }
            for k, v in (rt.points.items() if rt else [])
        },
        "facilities": {
            k: {"state": v.get("state"), "since": _iso(v.get("since"))}
            for k, v in (rt.facilities.items() if rt else [])
        },
    }


async def state_history(
    *,
    session: AsyncSession,
    view: RegistryView,
    identity: Identity,
    subject_id: str,
    since: AwareDatetime | None,
    page: PageRequest,
    withdrawn: bool = False,
) -> Page[dict[str, Any]]:
    """State changes of a point or facility of an enterprise in scope, oldest first (those
    a re-judgement after late data withdrew only when asked for)."""
    c = T.state_change.c
    where = [c.subject_id == subject_id]
    if since:
        where.append(c.since >= since)
    if not withdrawn:
        where.append(c.withdrawn_at.is_(None))
    query = select(T.state_change).where(*where).order_by(c.since, c.id)
    rows, total = await fetch_page(session, query, page)
    items = [dict(r._mapping) for r in rows]
    if items and not _visible(view, identity, items[0]["enterprise_id"]):
        raise NotFound(f"{subject_id} not found")
    return Page.of(items, total, page)


def thresholds(
    *,
    processor: AlarmProcessor,
    view: RegistryView,
    identity: Identity,
    enterprise_id: str,
    page: PageRequest,
) -> Page[dict[str, Any]]:
    """Configured, defaulted and learned thresholds of an enterprise's points, with hints."""
    model = processor.models.get(enterprise_id)
    if model is None or not _visible(view, identity, enterprise_id):
        raise NotFound(f"enterprise {enterprise_id} not found")
    out = []
    for pm in model.points.values():
        learned = pm.learned.rated_kw
        suggestion = None
        if learned:
            if pm.threshold_kw > 0.8 * learned:
                suggestion = "启停阈值高于学习额定负荷的 80%，可能配置过高"
            elif pm.threshold_kw < 0.02 * learned:
                suggestion = "启停阈值低于学习额定负荷的 2%，可能配置过低"
        ratio = 0.1 if pm.kind == "control" else 0.2
        out.append(
            {
                "point_id": pm.id,
                "name": pm.name,
                "kind": pm.kind,
                "threshold_kw": round(pm.threshold_kw, 3),
                "threshold_source": pm.threshold_source,
                "defaulted": pm.threshold_source != "configured",
                "basis": pm.threshold_basis,
                "idle_kw": round(pm.idle_kw, 3),
                "low_load_kw": pm.low_load_kw,
                "rated_kw": pm.rated_kw,
                "learned_rated_kw": learned,
                "learned_running_median_kw": pm.learned.running_median_kw,
                "suggestion": suggestion,
                "suggested_threshold_kw": round(ratio * learned, 3)
                if suggestion and learned
                else None,
            }
        )
    start = page.offset
    return Page.of(out[start : start + page.page_size], len(out), page)


async def overview(
    *,
    session: AsyncSession,
    processor: AlarmProcessor,
    view: RegistryView,
    identity: Identity,
    page: PageRequest,
) -> Page[dict[str, Any]]:
    """Every enterprise in scope with position, facility kinds and states, and open alarms."""
    enterprises = sorted(
        (
            e
            for e in view.all("enterprise")
            if identity.scope.allows(district=e.district_code, enterprise_id=e.id)
        ),
        key=lambda e: e.id,
    )
    chosen = enterprises[page.offset : page.offset + page.page_size]
    ids = [e.id for e in chosen]
    alarms: dict[str, list[dict[str, Any]]] = {}
    if ids:
        a = T.alarm.c
        rows = await session.execute(
            select(a.id, a.enterprise_id, a.rule_code, a.level, a.status, a.active).where(
                a.enterprise_id.in_(ids), a.status.notin_(("closed", "suppressed", "retracted"))
            )
        )
        for r in rows.mappings():
            alarms.setdefault(r["enterprise_id"], []).append(
                {k: r[k] for k in ("id", "rule_code", "level", "status", "active")}
            )
    facilities: dict[str, list[Any]] = {}
    wanted = set(ids)
    for f in view.all("facility"):
        if f.enterprise_id in wanted:
            facilities.setdefault(f.enterprise_id, []).append(f)
    items = []
    for e in chosen:
        rt = processor.runtimes.get(e.id)
        states = rt.facilities if rt else {}
        items.append(
            {
                "id": e.id,
                "name": e.name,
                "district_code": e.district_code,
                "district_name": e.district_name,
                "industry_name": e.industry_name,
                "longitude": e.longitude,
                "latitude": e.latitude,
                "production_status": e.production_status,
                "facilities": {
                    f.id: {"kind": f.kind, "state": states.get(f.id, {}).get("state")}
                    for f in facilities.get(e.id, [])
                },
                "alarms": alarms.get(e.id, []),
            }
        )
    return Page.of(items, len(enterprises), page)
