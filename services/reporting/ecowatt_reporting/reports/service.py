"""Report definitions, generation (scheduled and on demand), subscriptions and deliveries.

A report is generated in the background: `request_report` stores it as `queued` and returns
its id at once; the generator moves it through `running` (with `progress` 0–100 and the
current `step`) to `done` with its Excel and PDF stored, or `failed` with the reason. Each
report keeps its inputs' version: counts and latest change times of what it read (archive,
rollups, alarms, findings, compliance of the period) and the definition version, hashed
into `inputs_version`; `GET /reports/{id}` says whether the data have changed since
(`stale`), and a report of any past period can be generated again.

Schedule (`DailyJob`, local time): after `reporting_daily_at` the previous day's daily
report; on Mondays also last week's weekly report; on the 1st also last month's monthly
report. Missed days are caught up (`reporting_catch_up_days`). Today's provisional daily
report is regenerated every `reporting_today_every_min` minutes; provisional reports are
not delivered to subscribers, and only the newest one of a period is kept.

Deliveries: when a report is done, every active subscription for its kind and district gets
one delivery row (its key makes it once only): `inbox` rows are what `GET /reports/inbox`
lists for the person or role; `webhook` posts a signed JSON notice with the download links;
`sms` sends a one-line summary.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.db import Database
from ecowatt_kernel.identity import DataScope
from ecowatt_kernel.notify import SmsGateway, post_webhook, sms_gateway
from sqlalchemy import and_, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_reporting.reports.models import DELIVERY, KIND_ZH, REPORT, SUBSCRIPTION
from ecowatt_reporting.reports.render import (
    ReportDocument,
    headline,
    render_pdf,
    render_xlsx,
)
from ecowatt_reporting.settings import ReportingSettings
from ecowatt_reporting.statistics.models import Filters, Period, PeriodKind
from ecowatt_reporting.statistics.service import StatisticsParams, compute_statistics

__all__ = ["DEFINITIONS", "ReportDefinition", "Reports", "inputs_of"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportDefinition:
    """What a kind of report covers and shows."""

    kind: str
    version: int
    title: str
    period: PeriodKind
    top_n: int
    daily_charts: bool
    sections: tuple[str, ...]


_SECTIONS = (
    "总体情况（概述文字与主要指标）",
    "在线率与数据完整率（按区县、按行业）",
    "报警情况（按规则、区县、行业、等级，含环比）",
    "处置及时性（反馈、销号）",
    "重复报警企业",
    "数据质量问题（按类型）",
    "用电情况（按区县、行业，用电量居前企业，含环比）",
    "重污染天气管控合规（有管控时）",
)
DEFINITIONS: dict[str, ReportDefinition] = {
    "daily": ReportDefinition("daily", 1, "日报", "day", 10, False, _SECTIONS),
    "weekly": ReportDefinition(
        "weekly", 1, "周报", "week", 10, True, (*_SECTIONS, "每日趋势图（在线率、报警、用电）")
    ),
    "monthly": ReportDefinition(
        "monthly", 1, "月报", "month", 20, True, (*_SECTIONS, "每日趋势图（在线率、报警、用电）")
    ),
}


def period_of(kind: str, day: date) -> Period:
    return Period.of(DEFINITIONS[kind].period, day)


async def inputs_of(
    session: AsyncSession, *, period: Period, timezone: str, definition: ReportDefinition
) -> dict[str, Any]:
    """What a report of `period` reads, summarised: counts and latest change times."""
    tz = ZoneInfo(timezone)
    since = datetime.combine(period.start, datetime.min.time(), tzinfo=tz).astimezone(UTC)
    until = datetime.combine(period.end, datetime.min.time(), tzinfo=tz).astimezone(UTC)
    row = (
        await session.execute(
            text(
                "SELECT (SELECT count(*) FROM enterprise), (SELECT count(*) FROM point), "
                "(SELECT max(synced_at) FROM enterprise), (SELECT max(synced_at) FROM point), "
                "(SELECT count(*) FROM rollup_1d WHERE day >= :first AND day < :end), "
                "(SELECT sum(samples) FROM rollup_1d WHERE day >= :first AND day < :end), "
                "(SELECT max(updated_at) FROM rollup_1d WHERE day >= :first AND day < :end), "
                "(SELECT count(*) FROM alarm_record WHERE opened_at >= :since "
                "AND opened_at < :until), "
                "(SELECT max(updated_at) FROM alarm_record WHERE opened_at >= :since "
                "AND opened_at < :until), "
                "(SELECT count(*) FROM finding_record WHERE opened_at < :until), "
                "(SELECT max(updated_at) FROM finding_record WHERE opened_at < :until), "
                "(SELECT count(*) FROM compliance_hour WHERE hour_start >= :since "
                "AND hour_start < :until)"
            ),
            {"first": period.start, "end": period.end, "since": since, "until": until},
        )
    ).one()

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "definition": f"{definition.kind}@{definition.version}",
        "period": [period.start.isoformat(), period.end.isoformat()],
        "archive": {
            "enterprises": row[0],
            "points": row[1],
            "changed": iso(max(filter(None, (row[2], row[3])), default=None)),
        },
        "history": {"point_days": row[4], "samples": int(row[5] or 0), "changed": iso(row[6])},
        "alarms": {"count": row[7], "changed": iso(row[8])},
        "findings": {"count": row[9], "changed": iso(row[10])},
        "compliance": {"hours": row[11]},
    }


def version_of(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


class Reports:
    """Requests, generates and delivers reports; runs the schedule's work."""

    def __init__(
        self,
        *,
        database: Database,
        settings: ReportingSettings,
        sms: SmsGateway | None = None,
        clock: Callable[[], datetime] | None = None,
        demo_note: Callable[[], bool] | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.demo_note = demo_note or (lambda: False)
        key = settings.reporting_sms_api_key
        self.sms = sms or sms_gateway(
            provider=settings.reporting_sms_provider,
            url=settings.reporting_sms_url,
            api_key=key.get_secret_value() if key else None,
            sign=settings.reporting_sms_sign,
            timeout_s=settings.reporting_webhook_timeout_s,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # one generation at a time per process: CPU-bound

    @property
    def params(self) -> StatisticsParams:
        s = self.settings
        return StatisticsParams(
            timezone=s.timezone,
            feedback_deadline_h=s.reporting_feedback_deadline_h,
            close_deadline_h=s.reporting_close_deadline_h,
            repeat_offender_min=s.reporting_repeat_offender_min,
        )

    def today(self) -> date:
        return self.clock().astimezone(self.tz).date()

    # ------------------------------------------------------------------------ requesting

    async def request_report(
        self,
        *,
        kind: str,
        day: date,
        district_code: str | None,
        trigger: str,
        requested_by: str | None,
    ) -> uuid.UUID:
        """Store a queued report of the period holding `day` and start generating it."""
        definition = DEFINITIONS[kind]
        period = period_of(kind, day)
        report_id = uuid.uuid4()
        where = "" if district_code is None else f"（区县 {district_code}）"
        title = f"{period.label()}涉气排污单位治理设施用电监管{definition.title}{where}"
        async with self.database.transaction() as session:
            await session.execute(
                insert(REPORT).values(
                    id=report_id,
                    kind=kind,
                    period_start=period.start,
                    period_end=period.end,
                    district_code=district_code,
                    title=title,
                    definition_version=definition.version,
                    status="queued",
                    progress=0,
                    step="排队中",
                    provisional=period.end > self.today(),
                    trigger=trigger,
                    requested_by=requested_by,
                )
            )
        task = asyncio.create_task(self.generate(report_id), name=f"report:{report_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return report_id

    async def wait_idle(self) -> None:
        """Wait until every report started by this process has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _progress(
        self, report_id: uuid.UUID, progress: int, step: str, **values: Any
    ) -> None:
        async with self.database.transaction() as session:
            await session.execute(
                update(REPORT)
                .where(REPORT.c.id == report_id)
                .values(progress=progress, step=step, **values)
            )

    # ------------------------------------------------------------------------ generating

    async def generate(self, report_id: uuid.UUID) -> None:
        """Compute, render and store one queued report, then deliver it."""
        async with self._lock:
            try:
                await self._generate(report_id)
            except asyncio.CancelledError:
                await self._progress(
                    report_id,
                    0,
                    "已中断",
                    status="failed",
                    error="generation was interrupted (service stopped)",
                )
                raise
            except Exception as exc:
                _logger.exception("report %s failed", report_id)
                await self._progress(
                    report_id,
                    100,
                    "失败",
                    status="failed",
                    error=f"{type(exc).__name__}: {exc}"[:1000],
                    finished_at=self.clock(),
                )

    async def _generate(self, report_id: uuid.UUID) -> None:
        async with self.database.session() as session:
            report = (await session.execute(select(REPORT).where(REPORT.c.id == report_id))).one()
        definition = DEFINITIONS[report.kind]
        period = Period(report.period_start, report.period_end, definition.period)
        await self._progress(
            report_id, 5, "读取输入版本", status="running", started_at=self.clock()
        )
        async with self.database.session() as session:
            inputs = await inputs_of(
                session, period=period, timezone=self.settings.timezone, definition=definition
            )
        filters = Filters(district=[report.district_code] if report.district_code else None)
        await self._progress(
            report_id,
            15,
            "统计在线率、完整率、报警、用电",
            inputs=inputs,
            inputs_version=version_of(inputs),
        )
        async with self.database.session() as session:
            stats = await compute_statistics(
                session,
                period=period,
                filters=filters,
                scope=DataScope(all=True),
                params=self.params,
                now=self.clock(),
            )
        notes = []
        if report.provisional:
            notes.append("统计周期尚未结束，本报表为截至生成时间的临时数据。")
        if self.demo_note():
            notes.append(
                "开发环境：历史数据含合成的演示数据（ECOWATT_REPORTING_DEMO_HISTORY_DAYS）。"
            )
        document = ReportDocument(
            title=report.title,
            kind_name=KIND_ZH[report.kind],
            period_label=period.label(),
            scope_label="全市"
            if report.district_code is None
            else f"{_district_name(stats, report.district_code)}",
            generated_at=self.clock().astimezone(self.tz),
            definition=f"{report.kind} v{definition.version}",
            inputs_version=version_of(inputs),
            provisional=report.provisional,
            notes=tuple(notes),
            top_n=definition.top_n,
            daily_charts=definition.daily_charts and period.days > 1,
        )
        await self._progress(report_id, 55, "生成 Excel")
        xlsx = await asyncio.to_thread(render_xlsx, stats, document)
        await self._progress(report_id, 70, "生成 PDF（图表、中文字体）")
        pdf = await asyncio.to_thread(
            render_pdf, stats, document, font_path=self.settings.reporting_cjk_font
        )
        await self._progress(
            report_id,
            95,
            "保存",
            summary=headline(stats),
            content=json.loads(stats.model_dump_json()),
            xlsx=xlsx,
            pdf=pdf,
        )
        await self._progress(report_id, 100, "完成", status="done", finished_at=self.clock())
        if report.provisional:
            await self._drop_older_provisional(report)
        else:
            await self.deliver(report_id)

    async def _drop_older_provisional(self, report: Any) -> None:
        async with self.database.transaction() as session:
            await session.execute(
                delete(REPORT).where(
                    REPORT.c.kind == report.kind,
                    REPORT.c.period_start == report.period_start,
                    REPORT.c.district_code.is_not_distinct_from(report.district_code),
                    REPORT.c.provisional.is_(True),
                    REPORT.c.status.in_(("done", "failed")),
                    REPORT.c.id != report.id,
                    REPORT.c.created_at < report.created_at,
                )
            )

    async def recover(self) -> int:
        """Mark reports left queued or running by a stopped process as failed."""
        async with self.database.transaction() as session:
            result = await session.execute(
                update(REPORT)
                .where(REPORT.c.status.in_(("queued", "running")))
                .values(status="failed", error="interrupted by a restart", step="已中断")
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------------- schedule

    async def last_scheduled_day(self) -> date | None:
        """The newest day whose scheduled daily report exists (catch-up starts after it)."""
        async with self.database.session() as session:
            newest: date | None = await session.scalar(
                select(func.max(REPORT.c.period_start)).where(
                    REPORT.c.kind == "daily",
                    REPORT.c.trigger == "schedule",
                    REPORT.c.district_code.is_(None),
                    REPORT.c.provisional.is_(False),  # today's refresh closes nothing
                )
            )
        return newest

    async def close_day(self, day: date) -> list[uuid.UUID]:
        """The scheduled reports due once `day` has closed: daily, and weekly/monthly when
        `day` ends a week or a month."""
        ids = [
            await self.request_report(
                kind="daily", day=day, district_code=None, trigger="schedule", requested_by=None
            )
        ]
        if day.weekday() == 6:
            ids.append(
                await self.request_report(
                    kind="weekly",
                    day=day,
                    district_code=None,
                    trigger="schedule",
                    requested_by=None,
                )
            )
        if (day + timedelta(days=1)).day == 1:
            ids.append(
                await self.request_report(
                    kind="monthly",
                    day=day,
                    district_code=None,
                    trigger="schedule",
                    requested_by=None,
                )
            )
        await self.wait_idle()
        return ids

    async def refresh_today(self) -> uuid.UUID:
        """Regenerate today's provisional daily report."""
        report_id = await self.request_report(
            kind="daily",
            day=self.today(),
            district_code=None,
            trigger="schedule",
            requested_by=None,
        )
        await self.wait_idle()
        return report_id

    # ------------------------------------------------------------------------ delivering

    async def deliver(self, report_id: uuid.UUID) -> int:
        """One delivery per matching subscription (never twice); how many were new."""
        async with self.database.session() as session:
            report = (await session.execute(select(REPORT).where(REPORT.c.id == report_id))).one()
            subscriptions = (
                await session.execute(
                    select(SUBSCRIPTION).where(
                        SUBSCRIPTION.c.active.is_(True),
                        or_(SUBSCRIPTION.c.kind == "all", SUBSCRIPTION.c.kind == report.kind),
                        SUBSCRIPTION.c.district_code.is_not_distinct_from(report.district_code),
                    )
                )
            ).all()
        delivered = 0
        for subscription in subscriptions:
            async with self.database.transaction() as session:
                inserted = await session.execute(
                    insert(DELIVERY)
                    .values(
                        report_id=report_id,
                        subscription_id=subscription.id,
                        recipient_kind=subscription.recipient_kind,
                        recipient=subscription.recipient,
                        channel=subscription.channel,
                        status="pending",
                    )
                    .on_conflict_do_nothing()
                    .returning(DELIVERY.c.report_id)
                )
                if inserted.first() is None:
                    continue
            status, detail = "delivered", None
            try:
                if subscription.channel == "webhook" and subscription.target:
                    detail = await post_webhook(
                        subscription.target,
                        self._notice(report),
                        secret=self._secret(),
                        timeout_s=self.settings.reporting_webhook_timeout_s,
                    )
                elif subscription.channel == "sms" and subscription.target:
                    detail = await self.sms.send(subscription.target, self._sms_text(report))
            except Exception as exc:
                status, detail = "failed", f"{type(exc).__name__}: {exc}"[:500]
                _logger.warning("report delivery via %s failed: %s", subscription.channel, exc)
            async with self.database.transaction() as session:
                await session.execute(
                    update(DELIVERY)
                    .where(
                        and_(
                            DELIVERY.c.report_id == report_id,
                            DELIVERY.c.subscription_id == subscription.id,
                        )
                    )
                    .values(status=status, detail=detail)
                )
            delivered += 1
        return delivered

    def _secret(self) -> str | None:
        secret = self.settings.reporting_webhook_secret
        return secret.get_secret_value() if secret is not None else None

    def _links(self, report_id: uuid.UUID) -> dict[str, str]:
        base = self.settings.reporting_public_url.rstrip("/")
        return {
            "self": f"{base}/reports/{report_id}",
            "xlsx": f"{base}/reports/{report_id}/xlsx",
            "pdf": f"{base}/reports/{report_id}/pdf",
        }

    def _notice(self, report: Any) -> dict[str, Any]:
        return {
            "type": "report",
            "report": {
                "id": str(report.id),
                "kind": report.kind,
                "title": report.title,
                "period_start": report.period_start.isoformat(),
                "period_end": report.period_end.isoformat(),
                "district_code": report.district_code,
                "summary": report.summary,
            },
            "links": self._links(report.id),
            "text": self._sms_text(report),
        }

    def _sms_text(self, report: Any) -> str:
        s = report.summary or {}
        rate = s.get("online_rate")
        sign = self.settings.reporting_sms_sign
        return (
            f"【{sign}】{report.title}已生成：报警 {s.get('alarms', 0)} 起，"
            f"点位在线率 {'—' if rate is None else f'{rate * 100:.1f}%'}，"
            f"用电量 {s.get('energy_kwh', 0):,.0f} kWh。"
        )[:300]


def _district_name(stats: Any, code: str) -> str:
    for item in stats.availability_by_district:
        if item.key == code:
            return str(item.name)
    return code
