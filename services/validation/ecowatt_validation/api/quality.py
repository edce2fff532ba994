"""Quality figures: scorecards per enterprise (completeness, online rate, open findings)
and daily completeness and online rate, by any grouping."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any, Literal

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import Column
from ecowatt_kernel.identity import CurrentScope, DataScope
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import NotFound, Problem
from fastapi import APIRouter, Query, Request
from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.sql import Select

from ecowatt_validation.api.common import (
    ARCHIVE_CODES,
    Format,
    district_filter,
    export_rows,
    scoped,
    xlsx_download,
    yesterday,
)
from ecowatt_validation.models import ENTERPRISES, FINDINGS, POINT_DAILY

router = APIRouter(tags=["validation"])


def _point_day_query(
    scope: DataScope, day_from: date, day_to: date
) -> tuple[Any, list[ColumnElement[bool]]]:
    pd, e = POINT_DAILY.c, ENTERPRISES.c
    joined = POINT_DAILY.join(ENTERPRISES, e.id == pd.enterprise_id)
    conditions = [
        pd.day >= day_from,
        pd.day <= day_to,
        pd.expected_samples.is_not(None),
        scoped(scope, e.district_code, pd.enterprise_id),
    ]
    return joined, conditions


def _rates() -> list[Any]:
    pd = POINT_DAILY.c
    expected = func.sum(pd.expected_samples)
    return [
        func.count().label("point_days"),
        expected.label("expected_samples"),
        func.sum(func.least(pd.valid_samples, pd.expected_samples)).label("valid_samples"),
        (
            func.sum(func.least(pd.valid_samples, pd.expected_samples)) / func.nullif(expected, 0)
        ).label("completeness"),
        (func.sum(func.least(pd.samples, pd.expected_samples)) / func.nullif(expected, 0)).label(
            "online_rate"
        ),
        func.count().filter(pd.completeness >= 0.9).label("analysable_point_days"),
    ]


SCORECARD_COLUMNS = [
    Column("enterprise_id", "企业编号", width=20),
    Column("enterprise_name", "企业名称", width=30),
    Column("district_code", "区县", width=10),
    Column("om_company", "运维单位", width=20),
    Column("completeness", "数据完整率", width=12),
    Column("online_rate", "在线率", width=10),
    Column("archive_completeness", "档案完整率", width=12),
    Column("open_findings", "未解决问题", width=10),
    Column("open_by_rule", "按规则", width=60),
]


@router.get(
    "/scorecards", summary="Quality scorecard per enterprise (completeness, online rate, findings)"
)
async def scorecards(
    request: Request,
    scope: CurrentScope,
    session: DbSession,
    page: PageParams,
    day_from: date | None = None,
    day_to: date | None = None,
    district: Annotated[list[str] | None, Query()] = None,
    om_company: Annotated[list[str] | None, Query()] = None,
    enterprise_id: str | None = None,
    format: Format = "json",
) -> Any:
    day_to = day_to or yesterday(request)
    day_from = day_from or day_to
    e = ENTERPRISES.c
    conditions: list[ColumnElement[bool]] = [
        e.deleted.is_(False),
        scoped(scope, e.district_code, e.id),
    ]
    if (d := district_filter(district, e.district_code)) is not None:
        conditions.append(d)
    if om_company:
        conditions.append(e.om_company.in_(om_company))
    if enterprise_id:
        conditions.append(e.id == enterprise_id)
    query = select(ENTERPRISES).where(*conditions).order_by(e.district_code, e.id)
    if format == "xlsx":
        enterprises = await export_rows(session, query)
        total = len(enterprises)
    else:
        enterprises, total = await fetch_page(session, query, page)
    cards = await _cards(session, [r.id for r in enterprises], day_from, day_to)
    items = [
        {**dict(r._mapping), **cards[r.id], "enterprise_id": r.id, "enterprise_name": r.name}
        for r in enterprises
    ]
    for item in items:
        item.pop("id", None)
        item.pop("name", None)
        item.pop("deleted", None)
    if format == "xlsx":
        return await xlsx_download(
            SCORECARD_COLUMNS,
            ({**i, "open_by_rule": str(i["open_by_rule"])} for i in items),
            "企业质量评分",
            f"scorecards-{day_from}-{day_to}",
        )
    return {"day_from": day_from, "day_to": day_to, **Page.of(items, total, page).model_dump()}


async def _cards(
    session: Any, ids: list[str], day_from: date, day_to: date
) -> dict[str, dict[str, Any]]:
    pd, f = POINT_DAILY.c, FINDINGS.c
    out: dict[str, dict[str, Any]] = {
        i: {
            "completeness": None,
            "online_rate": None,
            "open_findings": 0,
            "open_by_rule": {},
            "archive_completeness": 1.0,
        }
        for i in ids
    }
    if not ids:
        return out
    rates = await session.execute(
        select(pd.enterprise_id, *_rates())
        .where(
            pd.enterprise_id.in_(ids),
            pd.day >= day_from,
            pd.day <= day_to,
            pd.expected_samples.is_not(None),
        )
        .group_by(pd.enterprise_id)
    )
    for r in rates:
        out[r.enterprise_id]["completeness"] = round(float(r.completeness or 0), 4)
        out[r.enterprise_id]["online_rate"] = round(float(r.online_rate or 0), 4)
    opened = await session.execute(
        select(f.enterprise_id, f.rule_code, func.count().label("n"))
        .where(f.enterprise_id.in_(ids), f.status == "open")
        .group_by(f.enterprise_id, f.rule_code)
    )
    for r in opened:
        card = out[r.enterprise_id]
        card["open_by_rule"][r.rule_code] = r.n
        card["open_findings"] += r.n
    for card in out.values():
        failed = sum(1 for code in ARCHIVE_CODES if card["open_by_rule"].get(code))
        card["archive_completeness"] = round(1 - failed / len(ARCHIVE_CODES), 4)
    return out


@router.get("/scorecards/{enterprise_id}", summary="One enterprise's scorecard, with daily figures")
async def scorecard(
    enterprise_id: str,
    request: Request,
    scope: CurrentScope,
    session: DbSession,
    day_from: date | None = None,
    day_to: date | None = None,
) -> dict[str, Any]:
    e, pd = ENTERPRISES.c, POINT_DAILY.c
    row = (
        await session.execute(
            select(ENTERPRISES).where(e.id == enterprise_id, scoped(scope, e.district_code, e.id))
        )
    ).first()
    if row is None:
        raise NotFound(f"no enterprise {enterprise_id!r} in your scope")
    day_to = day_to or yesterday(request)
    day_from = day_from or day_to - timedelta(days=6)
    card = (await _cards(session, [enterprise_id], day_from, day_to))[enterprise_id]
    days = await session.execute(
        select(pd.day, *_rates())
        .where(
            pd.enterprise_id == enterprise_id,
            pd.day >= day_from,
            pd.day <= day_to,
            pd.expected_samples.is_not(None),
        )
        .group_by(pd.day)
        .order_by(pd.day)
    )
    return {
        "enterprise_id": enterprise_id,
        "enterprise_name": row.name,
        "district_code": row.district_code,
        "om_company": row.om_company,
        "day_from": day_from,
        "day_to": day_to,
        **card,
        "days": [
            {
                "day": d.day,
                "completeness": round(float(d.completeness or 0), 4),
                "online_rate": round(float(d.online_rate or 0), 4),
                "point_days": d.point_days,
            }
            for d in days
        ],
    }


STATS_COLUMNS = [
    Column("day", "日期", width=12),
    Column("group", "分组", width=20),
    Column("point_days", "点位数", width=8),
    Column("expected_samples", "应传条数", width=10),
    Column("valid_samples", "有效条数", width=10),
    Column("completeness", "数据完整率", width=12),
    Column("online_rate", "在线率", width=10),
    Column("analysable_point_days", "可分析点位", width=10),
]


@router.get("/stats/daily", summary="Data completeness and online rate by day")
async def daily_stats(
    request: Request,
    scope: CurrentScope,
    session: DbSession,
    day_from: date | None = None,
    day_to: date | None = None,
    by: Annotated[
        Literal["all", "district", "industry", "om_company", "enterprise"], Query()
    ] = "all",
    format: Format = "json",
) -> Any:
    day_to = day_to or yesterday(request)
    day_from = day_from or day_to - timedelta(days=6)
    if (day_to - day_from).days > 366:
        raise Problem("at most 366 days per request", status=422, type_suffix="range-too-long")
    joined, conditions = _point_day_query(scope, day_from, day_to)
    e, pd = ENTERPRISES.c, POINT_DAILY.c
    group: Any = {
        "all": literal("all"),
        "district": e.district_code,
        "industry": e.industry_code,
        "om_company": e.om_company,
        "enterprise": pd.enterprise_id,
    }[by]
    query: Select[Any] = (
        select(pd.day, group.label("group"), *_rates())
        .select_from(joined)
        .where(*conditions)
        .group_by(pd.day, group)
        .order_by(pd.day, group)
    )
    rows = [
        {
            **dict(r._mapping),
            "completeness": round(float(r.completeness or 0), 4),
            "online_rate": round(float(r.online_rate or 0), 4),
        }
        for r in await session.execute(query)
    ]
    if format == "xlsx":
        return await xlsx_download(
            STATS_COLUMNS, rows, "完整率与在线率", f"stats-{day_from}-{day_to}"
        )
    return {"day_from": day_from, "day_to": day_to, "by": by, "rows": rows}
