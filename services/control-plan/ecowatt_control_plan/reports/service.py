"""Reports for a control period (supervision.md §3.6): the launch notice, the daily execution
report and the end-of-event assessment — the data (for the UI) and their Excel workbooks.

Definitions written down here and in `docs/control-plans.md`:

* An enterprise is *required* on a day when one of the order's tasks is in force that day.
* Its day is *non-compliant* with one judged hour of violation; else *cannot judge* when it
  has no judged hour or at least as many 无法判定 hours as judged ones; else *compliant*.
* Electricity reduction = baseline − actual over the hours where both are known (the
  enterprise's production points, or its total line without them): electricity stands in for
  emissions (Weifang 2022, supervision.md §3.5).
* Grade review: an enterprise with at least `REVIEW_MIN_HOURS` violating hours in the event;
  graded A, B or 引领性 enterprises come first (their grade exempts or eases their measures).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.excel import Column, Sheet, write_workbook
from ecowatt_kernel.identity import DataScope
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan.access import visible
from ecowatt_control_plan.alerts import service as alerts
from ecowatt_control_plan.alerts.models import ORIGIN_ZH
from ecowatt_control_plan.compliance.models import STATUSES, enterprise_hour
from ecowatt_control_plan.issues.models import issue
from ecowatt_control_plan.measures.models import LEVEL_ZH
from ecowatt_control_plan.tasks.models import task
from ecowatt_control_plan.tasks.service import order_end
from ecowatt_control_plan.tasks.views import describe

REVIEW_MIN_HOURS = 2
VIOLATIONS = ("未开启治污设备", "未响应停产", "未响应减产")
GRADE_ZH = {"A": "A级", "B": "B级", "C": "C级", "D": "D级", "leading": "引领性", "none": "未分级"}


def _names(view: RegistryView) -> dict[str, str]:
    out: dict[str, str] = {}
    for snap in view.all("enterprise"):
        code = getattr(snap, "district_code", None)
        name = getattr(snap, "district_name", None)
        if code and name:
            out.setdefault(code, name)
    return out


async def _tasks(session: AsyncSession, alert_id: str, scope: DataScope) -> list[dict[str, Any]]:
    query = (
        select(task)
        .where(
            task.c.alert_id == alert_id,
            visible(scope, task),
            or_(task.c.valid_to.is_(None), task.c.valid_to > task.c.valid_from),
        )
        .order_by(task.c.enterprise_id, task.c.valid_from)
    )
    return [dict(r) for r in (await session.execute(query)).mappings()]


async def launch_notice(
    session: AsyncSession, *, alert_id: str, view: RegistryView, scope: DataScope
) -> dict[str, Any]:
    """Level, times, listed enterprises by district, industry and grade, with their measures."""
    order = await alerts.load_order(session, alert_id=alert_id)
    names = _names(view)
    first: dict[str, dict[str, Any]] = {}
    for t in await _tasks(session, alert_id, scope):
        first.setdefault(t["enterprise_id"], t)
    groups: dict[str, dict[str, dict[str, int]]] = {
        "district": defaultdict(lambda: defaultdict(int)),
        "industry": defaultdict(lambda: defaultdict(int)),
        "grade": defaultdict(lambda: defaultdict(int)),
    }
    enterprises = []
    for t in first.values():
        actions = {m["action"] for m in t["measures"] if m["action"] != "KEEP_CONTROL_RUNNING"}
        keys = {
            "district": t["district_code"],
            "industry": t["industry_name"] or t["industry_code"] or "未知",
            "grade": GRADE_ZH.get(t["performance_grade"] or "none", "未分级"),
        }
        for dimension, key in keys.items():
            bucket = groups[dimension][key]
            bucket["enterprises"] += 1
            for action in actions:
                bucket[action] += 1
        enterprises.append(
            {
                "enterprise_id": t["enterprise_id"],
                "enterprise_name": t["enterprise_name"],
                "district_code": t["district_code"],
                "district_name": names.get(t["district_code"], t["district_code"]),
                "industry": keys["industry"],
                "grade": keys["grade"],
                "level": LEVEL_ZH.get(t["level"], t["level"]),
                "valid_from": t["valid_from"],
                "measures": "；".join(
                    describe(m) for m in t["measures"] if m["action"] != "KEEP_CONTROL_RUNNING"
                ),
            }
        )

    def table(dimension: str) -> list[dict[str, Any]]:
        rows = []
        for key, counts in sorted(groups[dimension].items()):
            rows.append(
                {
                    "key": key,
                    "name": names.get(key, key) if dimension == "district" else key,
                    "enterprises": counts["enterprises"],
                    "stop": counts["STOP"],
                    "limit": counts["LIMIT"],
                    "offpeak": counts["OFFPEAK"],
                    "exempt": counts["EXEMPT"],
                }
            )
        return rows

    return {
        "alert": {
            "id": order["id"],
            "name": order["name"],
            "origin": ORIGIN_ZH[order["origin"]],
            "level": LEVEL_ZH[order["level"]],
            "issued_at": order["issued_at"],
            "effective_at": order["effective_at"],
            "expected_end": order["expected_end"],
            "list_version": order["list_version"],
        },
        "enterprises_total": len(enterprises),
        "by_district": table("district"),
        "by_industry": table("industry"),
        "by_grade": table("grade"),
        "enterprises": enterprises,
    }


async def _hours(
    session: AsyncSession,
    *,
    alert_id: str,
    scope: DataScope,
    lo: datetime | None = None,
    hi: datetime | None = None,
) -> list[dict[str, Any]]:
    query = select(enterprise_hour).where(
        enterprise_hour.c.alert_id == alert_id, visible(scope, enterprise_hour)
    )
    if lo is not None:
        query = query.where(enterprise_hour.c.hour_start >= lo)
    if hi is not None:
        query = query.where(enterprise_hour.c.hour_start < hi)
    return [dict(r) for r in (await session.execute(query)).mappings()]


def _day_status(hours: list[dict[str, Any]]) -> str:
    statuses = [h["status"] for h in hours]
    if any(s in VIOLATIONS for s in statuses):
        return "non_compliant"
    unknown = sum(1 for s in statuses if s == "离线/无法判定")
    judged = len(statuses) - unknown
    if judged == 0 or unknown >= judged:
        return "cannot_judge"
    return "compliant"


def _reduction(
    rows: list[dict[str, Any]], key: str, names: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for h in rows:
        if h["baseline_kwh"] is None or h["actual_kwh"] is None:
            continue
        bucket = sums[h.get(key) or "未知"]
        bucket[0] += h["baseline_kwh"]
        bucket[1] += h["actual_kwh"]
        bucket[2] += 1
    out = []
    for k, (base, actual, n) in sorted(sums.items()):
        out.append(
            {
                "key": k,
                "name": (names or {}).get(k, k),
                "baseline_kwh": round(base, 1),
                "actual_kwh": round(actual, 1),
                "reduction_kwh": round(base - actual, 1),
                "reduction_pct": round((1 - actual / base) * 100, 1) if base > 0 else None,
                "hours": int(n),
            }
        )
    return out


def _industry(view: RegistryView, rows: list[dict[str, Any]]) -> None:
    for h in rows:
        snap = view.enterprise(h["enterprise_id"])
        h["industry"] = (snap.industry_name if snap else None) or h.get("industry_code") or "未知"
        h["enterprise_name"] = snap.name if snap else h["enterprise_id"]


async def daily(
    session: AsyncSession,
    *,
    alert_id: str,
    day: date,
    tz: ZoneInfo,
    view: RegistryView,
    scope: DataScope,
) -> dict[str, Any]:
    """Per district: required, compliant, non-compliant, cannot judge; reduction by district and
    industry; the top violators of one local day."""
    order = await alerts.load_order(session, alert_id=alert_id)
    lo = datetime.combine(day, datetime.min.time(), tzinfo=tz)
    hi = lo + timedelta(days=1)
    names = _names(view)
    required: dict[str, str] = {}
    for t in await _tasks(session, alert_id, scope):
        if t["valid_from"] < hi and (t["valid_to"] is None or t["valid_to"] > lo):
            required[t["enterprise_id"]] = t["district_code"]
    hours = await _hours(session, alert_id=alert_id, scope=scope, lo=lo, hi=hi)
    _industry(view, hours)
    by_enterprise: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for h in hours:
        by_enterprise[h["enterprise_id"]].append(h)
    districts: dict[str, dict[str, int]] = defaultdict(
        lambda: {"required": 0, "compliant": 0, "non_compliant": 0, "cannot_judge": 0}
    )
    for enterprise_id, district in required.items():
        row = districts[district]
        row["required"] += 1
        row[_day_status(by_enterprise.get(enterprise_id, []))] += 1
    violators = []
    for enterprise_id, rows in by_enterprise.items():
        bad = [h for h in rows if h["status"] in VIOLATIONS]
        if not bad:
            continue
        excess = sum(h["actual_kwh"] or 0.0 for h in bad)
        violators.append(
            {
                "enterprise_id": enterprise_id,
                "enterprise_name": rows[0]["enterprise_name"],
                "district_code": rows[0]["district_code"],
                "district_name": names.get(rows[0]["district_code"], rows[0]["district_code"]),
                "violation_hours": len(bad),
                "categories": "、".join(sorted({h["status"] for h in bad})),
                "actual_kwh_in_violation": round(excess, 1),
            }
        )
    violators.sort(key=lambda v: (-v["violation_hours"], -v["actual_kwh_in_violation"]))
    statuses = {s: sum(1 for h in hours if h["status"] == s) for s in STATUSES}
    return {
        "alert": {"id": order["id"], "name": order["name"], "level": LEVEL_ZH[order["level"]]},
        "day": day.isoformat(),
        "hours_judged": len(hours),
        "provisional_hours": sum(1 for h in hours if h["provisional"]),
        "hour_statuses": statuses,
        "by_district": [
            {"district_code": k, "district_name": names.get(k, k)} | v
            for k, v in sorted(districts.items())
        ],
        "reduction_by_district": _reduction(hours, "district_code", names),
        "reduction_by_industry": _reduction(hours, "industry"),
        "top_violators": violators[:20],
    }


async def assessment(
    session: AsyncSession, *, alert_id: str, view: RegistryView, scope: DataScope
) -> dict[str, Any]:
    """The whole event: electricity reduction (the emission proxy), statuses, issue handling,
    enterprises whose performance grade should be reviewed."""
    order = await alerts.load_order(session, alert_id=alert_id)
    names = _names(view)
    hours = [
        h for h in await _hours(session, alert_id=alert_id, scope=scope) if not h["provisional"]
    ]
    _industry(view, hours)
    total = _reduction([h | {"all": "全部"} for h in hours], "all")
    per_enterprise: dict[str, dict[str, Any]] = {}
    for h in hours:
        row = per_enterprise.setdefault(
            h["enterprise_id"],
            {
                "enterprise_id": h["enterprise_id"],
                "enterprise_name": h["enterprise_name"],
                "district_code": h["district_code"],
                "district_name": names.get(h["district_code"], h["district_code"]),
                "industry": h["industry"],
                "grade": GRADE_ZH.get(h["performance_grade"] or "none", "未分级"),
                "hours": 0,
                "violation_hours": 0,
                "unknown_hours": 0,
                "baseline_kwh": 0.0,
                "actual_kwh": 0.0,
            },
        )
        row["hours"] += 1
        row["violation_hours"] += h["status"] in VIOLATIONS
        row["unknown_hours"] += h["status"] == "离线/无法判定"
        if h["baseline_kwh"] is not None and h["actual_kwh"] is not None:
            row["baseline_kwh"] += h["baseline_kwh"]
            row["actual_kwh"] += h["actual_kwh"]
    for row in per_enterprise.values():
        base = row["baseline_kwh"]
        row["reduction_pct"] = round((1 - row["actual_kwh"] / base) * 100, 1) if base > 0 else None
        row["baseline_kwh"] = round(base, 1)
        row["actual_kwh"] = round(row["actual_kwh"], 1)
    review = sorted(
        (r for r in per_enterprise.values() if r["violation_hours"] >= REVIEW_MIN_HOURS),
        key=lambda r: (r["grade"] not in ("A级", "B级", "引领性"), -r["violation_hours"]),
    )
    issues = {
        state: int(n)
        for state, n in (
            await session.execute(
                select(issue.c.state, func.count())
                .where(issue.c.alert_id == alert_id, visible(scope, issue))
                .group_by(issue.c.state)
            )
        ).all()
    }
    opened = sum(issues.values())
    answered = opened - issues.get("open", 0)
    return {
        "alert": {
            "id": order["id"],
            "name": order["name"],
            "level": LEVEL_ZH[order["level"]],
            "effective_at": order["effective_at"],
            "end": order_end(order),
            "status": order["state"],
        },
        "hours_judged": len(hours),
        "hour_statuses": {s: sum(1 for h in hours if h["status"] == s) for s in STATUSES},
        "reduction_total": total[0] if total else None,
        "reduction_by_district": _reduction(hours, "district_code", names),
        "reduction_by_industry": _reduction(hours, "industry"),
        "issues": {
            "by_state": issues,
            "total": opened,
            "feedback_rate": round(answered / opened, 3) if opened else None,
        },
        "enterprises": sorted(per_enterprise.values(), key=lambda r: r["enterprise_id"]),
        "grade_review": review,
    }


# ------------------------------------------------------------------------------ Excel

_REDUCTION = (
    Column("name", "名称", width=20),
    Column("baseline_kwh", "基线电量(kWh)", width=14),
    Column("actual_kwh", "实际电量(kWh)", width=14),
    Column("reduction_kwh", "节电量(kWh)", width=14),
    Column("reduction_pct", "下降比例(%)", width=12),
    Column("hours", "小时数", width=10),
)
_COUNTS = (
    Column("name", "名称", width=20),
    Column("enterprises", "企业数", width=10),
    Column("stop", "停产", width=8),
    Column("limit", "限产", width=8),
    Column("offpeak", "错峰生产", width=10),
    Column("exempt", "豁免", width=8),
)


def launch_xlsx(data: dict[str, Any]) -> bytes:
    alert = data["alert"]
    overview = [
        {"item": "预警名称", "value": alert["name"]},
        {"item": "预警来源", "value": alert["origin"]},
        {"item": "预警级别", "value": alert["level"]},
        {"item": "发布时间", "value": alert["issued_at"]},
        {"item": "响应开始时间", "value": alert["effective_at"]},
        {"item": "预计结束时间", "value": alert["expected_end"]},
        {"item": "清单版本", "value": alert["list_version"]},
        {"item": "涉及企业数", "value": data["enterprises_total"]},
    ]
    return write_workbook(
        [
            Sheet(
                "启动通知",
                (Column("item", "项目", width=16), Column("value", "内容", width=40)),
                overview,
            ),
            Sheet("按区县", _COUNTS, data["by_district"]),
            Sheet("按行业", _COUNTS, data["by_industry"]),
            Sheet("按绩效分级", _COUNTS, data["by_grade"]),
            Sheet(
                "企业措施",
                (
                    Column("enterprise_name", "企业名称", width=28),
                    Column("district_name", "区县", width=10),
                    Column("industry", "行业", width=20),
                    Column("grade", "绩效分级", width=10),
                    Column("level", "预警级别", width=10),
                    Column("valid_from", "开始时间", width=18),
                    Column("measures", "减排措施", width=60),
                ),
                data["enterprises"],
            ),
        ]
    )


def daily_xlsx(data: dict[str, Any]) -> bytes:
    return write_workbook(
        [
            Sheet(
                "区县执行情况",
                (
                    Column("district_name", "区县", width=12),
                    Column("required", "应执行企业数", width=12),
                    Column("compliant", "合规", width=8),
                    Column("non_compliant", "不合规", width=8),
                    Column("cannot_judge", "无法判定", width=10),
                ),
                data["by_district"],
            ),
            Sheet("节电量-区县", _REDUCTION, data["reduction_by_district"]),
            Sheet("节电量-行业", _REDUCTION, data["reduction_by_industry"]),
            Sheet(
                "违规企业排行",
                (
                    Column("enterprise_name", "企业名称", width=28),
                    Column("district_name", "区县", width=10),
                    Column("violation_hours", "违规小时数", width=10),
                    Column("categories", "问题类型", width=30),
                    Column("actual_kwh_in_violation", "违规时段用电(kWh)", width=16),
                ),
                data["top_violators"],
            ),
        ]
    )


_ENTERPRISE = (
    Column("enterprise_name", "企业名称", width=28),
    Column("district_name", "区县", width=10),
    Column("industry", "行业", width=20),
    Column("grade", "绩效分级", width=10),
    Column("hours", "判定小时数", width=10),
    Column("violation_hours", "违规小时数", width=10),
    Column("unknown_hours", "无法判定小时数", width=12),
    Column("baseline_kwh", "基线电量(kWh)", width=14),
    Column("actual_kwh", "实际电量(kWh)", width=14),
    Column("reduction_pct", "下降比例(%)", width=12),
)


def assessment_xlsx(data: dict[str, Any]) -> bytes:
    total = data["reduction_total"] or {}
    issues = data["issues"]
    overview = [
        {"item": "预警名称", "value": data["alert"]["name"]},
        {"item": "判定企业小时数", "value": data["hours_judged"]},
        *({"item": f"状态：{k}", "value": v} for k, v in data["hour_statuses"].items()),
        {"item": "基线电量(kWh)", "value": total.get("baseline_kwh")},
        {"item": "实际电量(kWh)", "value": total.get("actual_kwh")},
        {"item": "节电量(kWh，减排替代指标)", "value": total.get("reduction_kwh")},
        {"item": "下降比例(%)", "value": total.get("reduction_pct")},
        {"item": "督办问题数", "value": issues["total"]},
        {"item": "反馈率", "value": issues["feedback_rate"]},
    ]
    return write_workbook(
        [
            Sheet(
                "总体评估",
                (Column("item", "项目", width=24), Column("value", "数值", width=20)),
                overview,
            ),
            Sheet("节电量-区县", _REDUCTION, data["reduction_by_district"]),
            Sheet("节电量-行业", _REDUCTION, data["reduction_by_industry"]),
            Sheet("企业明细", _ENTERPRISE, data["enterprises"]),
            Sheet("建议复核绩效分级", _ENTERPRISE, data["grade_review"]),
        ]
    )
