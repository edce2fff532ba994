"""Findings: the filtered, paginated list (and its export), one finding with its days and
links to the raw frames behind it, and the day's issue list per district or O&M company."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import Column
from ecowatt_kernel.frame_links import frame_links
from ecowatt_kernel.identity import CurrentScope
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import NotFound
from ecowatt_kernel.registry_view import RegistryView
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy import ColumnElement, func, literal, select

from ecowatt_validation.api.common import (
    Format,
    deployment_tz,
    district_filter,
    export_rows,
    runtime,
    scoped,
    xlsx_download,
    yesterday,
)
from ecowatt_validation.models import FINDING_DAYS, FINDINGS
from ecowatt_validation.rules import RULES_BY_CODE

router = APIRouter(tags=["validation"])


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
    min_age_days: Annotated[float | None, Query(ge=0, le=36_500)] = None,
    max_age_days: Annotated[float | None, Query(ge=0, le=36_500)] = None,
    day: Annotated[
        date | None, Query(description="Only findings that occurred on this day")
    ] = None,
    format: Format = "json",
) -> Any:
    now = datetime.now(UTC)
    f = FINDINGS.c
    conditions: list[ColumnElement[bool]] = [scoped(scope, f.district_code, f.enterprise_id)]
    if (d := district_filter(district, f.district_code)) is not None:
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
        rows = await export_rows(session, query)
        return await xlsx_download(
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


def finding_frames(
    *, finding: FindingOut, view: RegistryView, tz: ZoneInfo
) -> list[dict[str, Any]]:
    """Per device behind the finding's subject (a point's or a facility's devices, the
    device, an enterprise's devices), the archive query of the frames of the last local day
    it occurred on. Rules run on archive changes judge the registry, not frames: none."""
    rule = RULES_BY_CODE.get(finding.rule_code)
    if rule is None or "archive" in rule.triggers:
        return []
    devices: dict[str, set[str]] = {}
    kind, subject = finding.subject_kind, finding.subject_id
    if kind == "device":
        devices[subject] = {p.id for p in view.points_of_device(subject)}
    elif kind in ("point", "facility", "enterprise"):
        for point in view.of_enterprise("point", finding.enterprise_id):
            mn = getattr(point, "device_mn", None)
            if mn and (
                kind == "enterprise"
                or (kind == "point" and point.id == subject)
                or (kind == "facility" and getattr(point, "facility_id", None) == subject)
            ):
                devices.setdefault(mn, set()).add(point.id)
    start = datetime.combine(finding.last_day, time(), tzinfo=tz)
    end = datetime.combine(finding.last_day + timedelta(days=1), time(), tzinfo=tz)
    return frame_links(devices, start=start, end=end - timedelta(microseconds=1))


@router.get(
    "/findings/{finding_id}",
    summary="One finding with the days it occurred and links to its raw frames",
)
async def get_finding(
    finding_id: str, request: Request, scope: CurrentScope, session: DbSession
) -> dict[str, Any]:
    f = FINDINGS.c
    row = (
        await session.execute(
            select(FINDINGS).where(
                f.id == finding_id, scoped(scope, f.district_code, f.enterprise_id)
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
    finding = _finding_out(row, datetime.now(UTC))
    return {
        **finding.model_dump(),
        "frames": finding_frames(
            finding=finding, view=runtime(request).view, tz=deployment_tz(request)
        ),
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
    day = day or yesterday(request)
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
        .where(FINDING_DAYS.c.day == day, scoped(scope, f.district_code, f.enterprise_id))
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
        return await xlsx_download(columns, rows, "每日问题清单", f"issues-{day}")
    return {"day": day, "by": by, "rows": rows}
