"""REST API of the validation service (mounted at /api/validation in standalone mode).

Every list is filtered by the caller's data scope on the server (district officers see their
districts, enterprise users their enterprise), paginated, and exported as .xlsx with
`?format=xlsx` (the same filters, every matching row, Chinese headers).

Why one module of ~770 lines: the endpoints share the scope filters, the list/export
helpers and the query builders over the same few tables; feature folders (rules, findings,
scorecards, runs) as in the alarm service are the next step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.app import DbSession, service_context
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE, Column, rows_to_xlsx
from ecowatt_kernel.identity import CurrentIdentity, CurrentScope, DataScope, Role, require_roles
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import NotFound, Problem
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, func, literal, select
from sqlalchemy.sql import Select

from ecowatt_validation.models import (
    DAILY_RUNS,
    ENTERPRISES,
    FINDING_DAYS,
    FINDINGS,
    POINT_DAILY,
    RULE_VERSIONS,
    RULES_TABLE,
    UNBOUND,
)
from ecowatt_validation.rules import RULES, RULES_BY_CODE

router = APIRouter(tags=["validation"])

Format = Annotated[Literal["json", "xlsx"], Query(description="json, or xlsx for an export")]
ARCHIVE_CODES = (
    "no_monitoring_point",
    "no_total_point",
    "production_facility_unmonitored",
    "control_facility_unmonitored",
    "production_threshold_missing",
)


def _runtime(request: Request) -> Any:
    return service_context(request).state["validation"]


def _tz(request: Request) -> ZoneInfo:
    return ZoneInfo(service_context(request).settings.timezone)


def _yesterday(request: Request) -> date:
    today: date = _runtime(request).checks.today()
    return today - timedelta(days=1)


def _xlsx(
    columns: Sequence[Column], rows: Iterable[Mapping[str, Any]], title: str, name: str
) -> Response:
    return Response(
        rows_to_xlsx(columns, rows, title=title),
        media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
    )


def _scoped(scope: DataScope, district: Any, enterprise: Any) -> ColumnElement[bool]:
    return scope.where(district_column=district, enterprise_column=enterprise)


def _district_filter(codes: list[str] | None, column: Any) -> ColumnElement[bool] | None:
    if not codes:
        return None
    return DataScope(districts=frozenset(codes)).where(district_column=column)


# ------------------------------------------------------------------------------- rules


class RuleOut(BaseModel):
    code: str
    name_zh: str
    name_en: str
    kind: str
    triggers: list[str]
    subject: str
    severity: str
    formula: str
    version: int
    enabled: bool
    params: dict[str, Any]
    defaults: dict[str, Any]
    updated_at: datetime | None = None
    updated_by: str | None = None


class RuleUpdate(BaseModel):
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool | None = None
    reason: str | None = None


def _rule_out(row: Any) -> RuleOut:
    rule = RULES_BY_CODE[row.code]
    return RuleOut(
        code=rule.code,
        name_zh=rule.name_zh,
        name_en=rule.name_en,
        kind=rule.kind,
        triggers=list(rule.triggers),
        subject=rule.subject,
        severity=rule.severity,
        formula=rule.formula,
        version=row.version,
        enabled=row.enabled,
        params={**rule.defaults, **row.params},
        defaults=dict(rule.defaults),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


@router.get("/rules", summary="Every rule with its version and parameters")
async def list_rules(identity: CurrentIdentity, session: DbSession, format: Format = "json") -> Any:
    rows = {r.code: r for r in await session.execute(select(RULES_TABLE))}
    out = [_rule_out(rows[r.code]) for r in RULES if r.code in rows]
    if format == "xlsx":
        columns = [
            Column("code", "规则编码", width=30),
            Column("name_zh", "规则名称", width=36),
            Column("name_en", "Rule", width=40),
            Column("version", "版本", width=6),
            Column("enabled", "启用", width=6),
            Column("params", "参数", width=60),
            Column("formula", "计算方法", width=100),
        ]
        return _xlsx(
            columns,
            (
                {**o.model_dump(), "params": str(o.params), "enabled": "是" if o.enabled else "否"}
                for o in out
            ),
            "规则",
            "rules",
        )
    return out


@router.get("/rules/{code}", summary="One rule and its version history")
async def get_rule(code: str, identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    row = (await session.execute(select(RULES_TABLE).where(RULES_TABLE.c.code == code))).first()
    if row is None or code not in RULES_BY_CODE:
        raise NotFound(f"no rule {code!r}")
    versions = await session.execute(
        select(RULE_VERSIONS).where(RULE_VERSIONS.c.code == code).order_by(RULE_VERSIONS.c.version)
    )
    return {**_rule_out(row).model_dump(), "versions": [dict(v._mapping) for v in versions]}


@router.put(
    "/rules/{code}",
    summary="Change a rule's parameters (admins); writes a new rule version",
    dependencies=[require_roles()],
)
async def update_rule(
    code: str, body: RuleUpdate, request: Request, identity: CurrentIdentity, session: DbSession
) -> RuleOut:
    if code not in RULES_BY_CODE:
        raise NotFound(f"no rule {code!r}")
    runtime = _runtime(request)
    try:
        await runtime.rulebook.update(
            session,
            code,
            params=body.params,
            enabled=body.enabled,
            actor=identity.subject,
            reason=body.reason,
        )
    except ValueError as exc:
        raise Problem(str(exc), status=422, type_suffix="invalid-parameters") from None
    await session.commit()
    row = (await session.execute(select(RULES_TABLE).where(RULES_TABLE.c.code == code))).one()
    return _rule_out(row)


# ----------------------------------------------------------------------------- findings


class FindingOut(BaseModel):
    id: str
    rule_code: str
    rule_name: str
    rule_version: int
    severity: str
    status: str
    last_change: str
    subject_kind: str
    subject_id: str
    subject_name: str | None
    enterprise_id: str
    enterprise_name: str | None
    district_code: str | None
    zone: str | None
    industry_code: str | None
    om_company: str | None
    first_opened_at: datetime
    opened_at: datetime
    changed_at: datetime
    resolved_at: datetime | None
    last_day: date
    occurrences: int
    reopen_count: int
    age_days: float
    evidence: dict[str, Any]


FINDING_COLUMNS = [
    Column("rule_code", "规则编码", width=30),
    Column("rule_name", "规则名称", width=36),
    Column("severity", "级别", width=8),
    Column("status", "状态", width=8),
    Column("enterprise_name", "企业名称", width=30),
    Column("district_code", "区县", width=10),
    Column("zone", "片区", width=10),
    Column("industry_code", "行业", width=8),
    Column("om_company", "运维单位", width=20),
    Column("subject_kind", "对象类型", width=10),
    Column("subject_name", "对象", width=24),
    Column("subject_id", "对象编号", width=28),
    Column("first_opened_at", "首次发现", width=20),
    Column("opened_at", "本次打开", width=20),
    Column("last_day", "最近发生日", width=12),
    Column("age_days", "持续天数", width=8),
    Column("occurrences", "发生天数", width=8),
    Column("evidence", "证据", width=80),
]
STATUS_ZH = {"open": "未解决", "resolved": "已解决"}


def _finding_out(row: Any, now: datetime) -> FindingOut:
    data = dict(row._mapping)
    end = data["resolved_at"] or now
    data["age_days"] = round((end - data["opened_at"]).total_seconds() / 86400.0, 2)
    data["rule_name"] = (
        RULES_BY_CODE[data["rule_code"]].name_zh if data["rule_code"] in RULES_BY_CODE else ""
    )
    return FindingOut.model_validate(data)


@router.get("/findings", summary="Findings, filtered, paginated; ?format=xlsx exports them")
async def list_findings(
    request: Request,
    scope: CurrentScope,
    session: DbSession,
    page: PageParams,
    district: Annotated[
        list[str] | None, Query(description="GB/T 2260 codes; 6101 00 covers children")
    ] = None,
    zone: Annotated[list[str] | None, Query()] = None,
    industry: Annotated[
        str | None, Query(description="GB/T 4754 code prefix, e.g. 30 or 3011")
    ] = None,
    om_company: Annotated[list[str] | None, Query()] = None,
    rule: Annotated[list[str] | None, Query()] = None,
    status: Annotated[Literal["open", "resolved", "all"], Query()] = "open",
    subject_kind: Annotated[str | None, Query()] = None,
    enterprise_id: Annotated[str | None, Query()] = None,
    severity: Annotated[str | None, Query()] = None,
    min_age_days: Annotated[float | None, Query(ge=0)] = None,
    max_age_days: Annotated[float | None, Query(ge=0)] = None,
    day: Annotated[
        date | None, Query(description="Only findings that occurred on this day")
    ] = None,
    format: Format = "json",
) -> Any:
    now = datetime.now(UTC)
    f = FINDINGS.c
    conditions: list[ColumnElement[bool]] = [_scoped(scope, f.district_code, f.enterprise_id)]
    if (d := _district_filter(district, f.district_code)) is not None:
        conditions.append(d)
    if zone:
        conditions.append(f.zone.in_(zone))
    if industry:
        conditions.append(f.industry_code.startswith(industry, autoescape=True))
    if om_company:
        conditions.append(f.om_company.in_(om_company))
    if rule:
        conditions.append(f.rule_code.in_(rule))
    if status != "all":
        conditions.append(f.status == status)
    if subject_kind:
        conditions.append(f.subject_kind == subject_kind)
    if enterprise_id:
        conditions.append(f.enterprise_id == enterprise_id)
    if severity:
        conditions.append(f.severity == severity)
    end = func.coalesce(f.resolved_at, literal(now))
    if min_age_days is not None:
        conditions.append(f.opened_at <= end - timedelta(days=min_age_days))
    if max_age_days is not None:
        conditions.append(f.opened_at >= end - timedelta(days=max_age_days))
    if day is not None:
        conditions.append(
            f.id.in_(select(FINDING_DAYS.c.finding_id).where(FINDING_DAYS.c.day == day))
        )
    query = select(FINDINGS).where(*conditions).order_by(f.opened_at.desc(), f.id)
    if format == "xlsx":
        rows = (await session.execute(query)).all()
        return _xlsx(
            FINDING_COLUMNS,
            (
                {
                    **o.model_dump(),
                    "status": STATUS_ZH.get(o.status, o.status),
                    "evidence": str(o.evidence),
                }
                for o in (_finding_out(r, now) for r in rows)
            ),
            "问题清单",
            "findings",
        )
    rows, total = await fetch_page(session, query, page)
    return Page.of([_finding_out(r, now) for r in rows], total, page)


@router.get("/findings/{finding_id}", summary="One finding with the days it occurred")
async def get_finding(finding_id: str, scope: CurrentScope, session: DbSession) -> dict[str, Any]:
    f = FINDINGS.c
    row = (
        await session.execute(
            select(FINDINGS).where(
                f.id == finding_id, _scoped(scope, f.district_code, f.enterprise_id)
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"no finding {finding_id!r}")
    days = await session.execute(
        select(FINDING_DAYS)
        .where(FINDING_DAYS.c.finding_id == finding_id)
        .order_by(FINDING_DAYS.c.day.desc())
    )
    return {
        **_finding_out(row, datetime.now(UTC)).model_dump(),
        "days": [
            {"day": d.day, "count": d.count, "rule_version": d.rule_version, "evidence": d.evidence}
            for d in days
        ],
    }


# ------------------------------------------------------------------------ daily issues


@router.get("/issues/daily", summary="The day's issue list per district or per O&M company")
async def daily_issues(
    request: Request,
    scope: CurrentScope,
    session: DbSession,
    by: Annotated[Literal["district", "om_company"], Query()] = "district",
    day: Annotated[
        date | None, Query(description="Default: yesterday (deployment time zone)")
    ] = None,
    format: Format = "json",
) -> Any:
    day = day or _yesterday(request)
    f = FINDINGS.c
    group = f.district_code if by == "district" else f.om_company
    query = (
        select(
            group.label("group"),
            f.rule_code,
            func.count().label("count"),
            func.count().filter(f.status == "open").label("open"),
            func.avg(func.extract("epoch", func.now() - f.opened_at) / 86400.0)
            .filter(f.status == "open")
            .label("mean_open_age_days"),
        )
        .select_from(FINDINGS.join(FINDING_DAYS, FINDING_DAYS.c.finding_id == f.id))
        .where(FINDING_DAYS.c.day == day, _scoped(scope, f.district_code, f.enterprise_id))
        .group_by(group, f.rule_code)
        .order_by(group, f.rule_code)
    )
    rows = [
        {
            "day": day,
            "group": r.group,
            "rule_code": r.rule_code,
            "rule_name": RULES_BY_CODE[r.rule_code].name_zh if r.rule_code in RULES_BY_CODE else "",
            "count": r.count,
            "open": r.open,
            "mean_open_age_days": round(float(r.mean_open_age_days), 2)
            if r.mean_open_age_days
            else 0.0,
        }
        for r in await session.execute(query)
    ]
    if format == "xlsx":
        columns = [
            Column("day", "日期", width=12),
            Column("group", "区县" if by == "district" else "运维单位", width=20),
            Column("rule_code", "规则编码", width=30),
            Column("rule_name", "规则名称", width=36),
            Column("count", "问题数", width=8),
            Column("open", "未解决", width=8),
            Column("mean_open_age_days", "平均持续天数", width=12),
        ]
        return _xlsx(columns, rows, "每日问题清单", f"issues-{day}")
    return {"day": day, "by": by, "rows": rows}


# ------------------------------------------------------------------ scorecards and stats


def _point_day_query(
    scope: DataScope, day_from: date, day_to: date
) -> tuple[Any, list[ColumnElement[bool]]]:
    pd, e = POINT_DAILY.c, ENTERPRISES.c
    joined = POINT_DAILY.join(ENTERPRISES, e.id == pd.enterprise_id)
    conditions = [
        pd.day >= day_from,
        pd.day <= day_to,
        pd.expected_samples.is_not(None),
        _scoped(scope, e.district_code, pd.enterprise_id),
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
    day_to = day_to or _yesterday(request)
    day_from = day_from or day_to
    e = ENTERPRISES.c
    conditions: list[ColumnElement[bool]] = [
        e.deleted.is_(False),
        _scoped(scope, e.district_code, e.id),
    ]
    if (d := _district_filter(district, e.district_code)) is not None:
        conditions.append(d)
    if om_company:
        conditions.append(e.om_company.in_(om_company))
    if enterprise_id:
        conditions.append(e.id == enterprise_id)
    query = select(ENTERPRISES).where(*conditions).order_by(e.district_code, e.id)
    if format == "xlsx":
        enterprises = (await session.execute(query)).all()
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
        return _xlsx(
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
            select(ENTERPRISES).where(e.id == enterprise_id, _scoped(scope, e.district_code, e.id))
        )
    ).first()
    if row is None:
        raise NotFound(f"no enterprise {enterprise_id!r} in your scope")
    day_to = day_to or _yesterday(request)
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
    day_to = day_to or _yesterday(request)
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
        return _xlsx(STATS_COLUMNS, rows, "完整率与在线率", f"stats-{day_from}-{day_to}")
    return {"day_from": day_from, "day_to": day_to, "by": by, "rows": rows}


# ------------------------------------------------------------------- unbound and runs


@router.get("/unbound", summary="Readings and values that no point binds, by device and day")
async def unbound(
    request: Request,
    identity: CurrentIdentity,
    scope: CurrentScope,
    session: DbSession,
    page: PageParams,
    day: date | None = None,
    format: Format = "json",
) -> Any:
    u, e = UNBOUND.c, ENTERPRISES.c
    conditions: list[ColumnElement[bool]] = []
    if day:
        conditions.append(u.day == day)
    if not scope.all:
        # Readings of unknown devices belong to nobody: only city-wide callers see them.
        conditions.append(
            and_(
                u.enterprise_id.is_not(None),
                u.enterprise_id.in_(select(e.id).where(_scoped(scope, e.district_code, e.id))),
            )
        )
    query = select(UNBOUND).where(*conditions).order_by(u.day.desc(), u.mn, u.reason, u.detail)
    if format == "xlsx":
        columns = [
            Column("day", "日期", width=12),
            Column("mn", "设备MN", width=28),
            Column("reason", "原因", width=16),
            Column("detail", "回路/编码", width=16),
            Column("enterprise_id", "企业编号", width=20),
            Column("count", "条数", width=10),
            Column("last_seen_at", "最近接收", width=20),
        ]
        return _xlsx(
            columns,
            (dict(r._mapping) for r in await session.execute(query)),
            "未绑定数据",
            "unbound",
        )
    rows, total = await fetch_page(session, query, page)
    return Page.of([dict(r._mapping) for r in rows], total, page)


class RunRequest(BaseModel):
    day: date


@router.post(
    "/runs",
    summary="Re-run the day-close rules for a past day",
    dependencies=[require_roles(Role.CITY_SUPERVISOR)],
    status_code=200,
)
async def rerun(body: RunRequest, request: Request) -> dict[str, Any]:
    if body.day >= _runtime(request).checks.today():
        raise Problem(
            "only a closed (past) day can be run", status=422, type_suffix="day-not-closed"
        )
    stats = await _runtime(request).run_day(body.day, "api")
    return {"day": body.day, **stats}


class ArchiveComplete(BaseModel):
    enterprise_id: str


@router.post(
    "/archive/complete",
    summary="Declare an enterprise's archive complete: judge it now, without the settle time",
    dependencies=[require_roles(Role.CITY_SUPERVISOR, Role.OM_OPERATOR)],
)
async def archive_complete(
    body: ArchiveComplete, request: Request, identity: CurrentIdentity
) -> dict[str, Any]:
    runtime = _runtime(request)
    enterprise = runtime.view.enterprise(body.enterprise_id)
    if enterprise is None or not identity.scope.allows(
        district=enterprise.district_code, enterprise_id=body.enterprise_id
    ):
        raise NotFound(f"enterprise {body.enterprise_id} not found")
    runtime.checks.complete(body.enterprise_id)
    events = await runtime.checks.check_archive()
    return {"enterprise_id": body.enterprise_id, "events": events}


@router.get("/runs", summary="Day-close runs, newest first")
async def runs(
    identity: CurrentIdentity, session: DbSession, page: PageParams
) -> Page[dict[str, Any]]:
    query = select(DAILY_RUNS).order_by(DAILY_RUNS.c.id.desc())
    rows, total = await fetch_page(session, query, page)
    return Page.of([dict(r._mapping) for r in rows], total, page)


__all__ = ["router"]
