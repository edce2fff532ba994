"""Notifications: who hears about an alarm, over which channel, and the log of every attempt.

The notifier consumes the service's own `alarms` topic (group `alarm.notify`), so a
notification is sent only for an alarm change that was committed, and at least once. Each
(alarm, change, level, channel, recipient) is attempted once (unique row in
`alarm.notification`); a crash between sending and logging can re-send it.

Recipients: the enterprise's contacts from the archive (`EnterpriseSnapshot.contacts`, SMS),
the district's contacts (`alarm.district_contact`: SMS and/or a webhook) and the configured
webhooks (`ECOWATT_ALARM_WEBHOOK_URLS`). Rules:

- opened and escalated alarms notify; suppressed ones never do; recovered and closed ones
  go to webhooks only; a retraction reaches the webhooks and whoever was texted about the
  alarm;
- late findings (found in back-filled or late data, `AlarmChanged.late`) reach the webhooks
  one by one, and by text once per enterprise and de-duplication window (a pointer to the
  list, not a storm); they are never escalated by text;
- quiet hours (`ECOWATT_ALARM_QUIET_HOURS`, local time) hold SMS below
  `ECOWATT_ALARM_QUIET_MIN_LEVEL` (logged as `quiet_hours`);
- de-duplication: the same recipient is not told about the same (rule, subject) twice within
  `ECOWATT_ALARM_DEDUP_WINDOW_MIN` unless the level rose (logged as `deduplicated`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import httpx
from ecowatt_kernel.bus import Record
from ecowatt_kernel.contracts import AlarmChanged, ContractError, EnterpriseSnapshot, decode
from ecowatt_kernel.db import Database
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import insert

from ecowatt_alarm import tables as T
from ecowatt_alarm.notifications.webhooks import (
    WebhookPolicy,
    WebhookRefused,
    check_url,
    guarded_client,
)
from ecowatt_alarm.rules import LEVEL_NAMES
from ecowatt_alarm.settings import AlarmSettings

__all__ = ["HttpSmsGateway", "LogSmsGateway", "Notifier", "SmsGateway", "in_quiet_hours"]

_logger = logging.getLogger(__name__)


class SmsGateway(Protocol):
    """Sends one text message; returns a provider reference or raises."""

    async def send(self, phone: str, text: str) -> str: ...


def _mask(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****"


class LogSmsGateway:
    """The default: writes the message to the log instead of sending it."""

    async def send(self, phone: str, text: str) -> str:
        _logger.info("SMS (log only) to %s: %s", _mask(phone), text)
        return "logged"


class HttpSmsGateway:
    """A generic HTTP SMS provider: POST JSON {phone, sign, text} with a bearer API key."""

    def __init__(self, url: str, api_key: str | None, sign: str, timeout_s: float = 5.0) -> None:
        self.url, self.api_key, self.sign, self.timeout_s = url, api_key, sign, timeout_s

    async def send(self, phone: str, text: str) -> str:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            response = await client.post(
                self.url, json={"phone": phone, "sign": self.sign, "text": text}, headers=headers
            )
            response.raise_for_status()
            return response.text[:200]


def in_quiet_hours(spec: str | None, local: datetime) -> bool:
    """True when `local` falls inside "HH:MM-HH:MM" (which may wrap midnight)."""
    if not spec:
        return False
    start_s, _, end_s = spec.partition("-")
    start, end = time.fromisoformat(start_s.strip()), time.fromisoformat(end_s.strip())
    now = local.time()
    return start <= now < end if start <= end else (now >= start or now < end)


class Notifier:
    """Consumes `alarms` and notifies contacts."""

    def __init__(
        self,
        *,
        database: Database,
        settings: AlarmSettings,
        view: RegistryView,
        sms: SmsGateway | None = None,
        clock: Callable[[], float] | None = None,
        webhook_policy: WebhookPolicy | None = None,
    ) -> None:
        self.db = database
        self.settings = settings
        self.webhook_policy = webhook_policy or WebhookPolicy.from_setting(
            settings.alarm_webhook_allowed_networks
        )
        self.view = view
        self.tz = ZoneInfo(settings.timezone)
        self.clock = clock or (lambda: datetime.now(UTC).timestamp())
        if sms is not None:
            self.sms: SmsGateway = sms
        elif settings.alarm_sms_provider == "http" and settings.alarm_sms_url:
            key = settings.alarm_sms_api_key
            self.sms = HttpSmsGateway(
                settings.alarm_sms_url,
                key.get_secret_value() if key else None,
                settings.alarm_sms_sign,
                settings.alarm_webhook_timeout_s,
            )
        else:
            self.sms = LogSmsGateway()

    async def handle(self, records: Sequence[Record]) -> None:
        if not self.settings.alarm_notify_enabled:
            return
        for record in records:
            try:
                event = decode(record).data
            except ContractError:
                continue
            if isinstance(event, AlarmChanged):
                await self.notify(event)

    def text_of(self, event: AlarmChanged) -> str:
        enterprise = self.view.enterprise(event.enterprise_id)
        name = enterprise.name if enterprise else event.enterprise_id
        sign = self.settings.alarm_sms_sign
        if event.change == "retracted":
            reason = (event.retraction or {}).get("reason", "")
            return f"【{sign}】{name} {event.rule_name or event.rule_code} 报警已撤回：{reason}"[
                :500
            ]
        if event.late:
            first = (
                event.first_at.astimezone(self.tz).strftime("%m-%d %H:%M") if event.first_at else ""
            )
            return (
                f"【{sign}】{name} 补传/迟到数据中发现历史报警（"
                f"{event.rule_name or event.rule_code}，违规始于 {first}），"
                "同一企业的其他历史报警不再逐条短信通知，请登录平台查看。"
            )[:500]
        verb = {"opened": "报警", "escalated": "升级"}.get(event.change, event.change)
        text = event.explanation or ""
        level = LEVEL_NAMES.get(event.level, str(event.level))
        return f"【{sign}】{name} {verb}（{level}）：{text}"[:500]

    async def recipients(self, event: AlarmChanged) -> list[tuple[str, str, int]]:
        """(channel, recipient, min level) for this alarm."""
        out: list[tuple[str, str, int]] = []
        enterprise = self.view.enterprise(event.enterprise_id)
        district = event.district_code or (enterprise.district_code if enterprise else None)
        if isinstance(enterprise, EnterpriseSnapshot):
            for contact in enterprise.contacts:
                if contact.notify and contact.phone:
                    out.append(("sms", contact.phone, 1))
        if district:
            async with self.db.session() as s:
                rows = await s.execute(
                    select(T.district_contact).where(T.district_contact.c.district_code == district)
                )
                for row in rows.mappings():
                    if row["phone"]:
                        out.append(("sms", row["phone"], row["min_level"]))
                    if row["webhook_url"]:
                        out.append(("webhook", row["webhook_url"], row["min_level"]))
        out.extend(("webhook", url, 1) for url in self.settings.alarm_webhook_urls)
        seen: set[tuple[str, str]] = set()
        unique = []
        for channel, recipient, level in out:
            if (channel, recipient) not in seen:
                seen.add((channel, recipient))
                unique.append((channel, recipient, level))
        return unique

    async def notify(self, event: AlarmChanged) -> None:
        if event.status == "suppressed" or event.change in ("suppressed", "updated"):
            return
        # SMS: news only — an opening, an escalation, a withdrawal of what was texted. A late
        # finding (found in back-filled data) is texted once per enterprise and window, as a
        # pointer to the list, never escalated by text: a backlog is not a storm.
        sms_allowed = event.change in ("opened", "escalated", "retracted") and not (
            event.late and event.change == "escalated"
        )
        if event.level < self.settings.alarm_notify_min_level:
            return
        now = self.clock()
        local = datetime.fromtimestamp(now, self.tz)
        quiet = in_quiet_hours(self.settings.alarm_quiet_hours, local)
        texted = await self._texted(event.alarm_id) if event.change == "retracted" else set()
        for channel, recipient, min_level in await self.recipients(event):
            if event.level < min_level or (channel == "sms" and not sms_allowed):
                continue
            if channel == "sms" and event.change == "retracted" and recipient not in texted:
                continue  # only those who were told about it hear that it is withdrawn
            key = {
                "alarm_id": event.alarm_id,
                "change": event.change,
                "level": event.level,
                "channel": channel,
                "recipient": recipient,
            }
            late_text = channel == "sms" and event.late and event.change == "opened"
            subject = (
                f"late:{event.enterprise_id}"
                if late_text
                else f"{event.rule_code}|{event.subject_id}"
            )
            dedup_key = f"{channel}|{recipient}|{subject}"
            async with self.db.session() as s:
                done = await s.scalar(
                    select(func.count())
                    .select_from(T.notification)
                    .where(and_(*(T.notification.c[k] == v for k, v in key.items())))
                )
                if done:
                    continue  # a redelivered event: attempted already
                recent = await s.scalar(
                    select(func.max(T.notification.c.level)).where(
                        T.notification.c.dedup_key == dedup_key,
                        T.notification.c.status == "sent",
                        T.notification.c.created_at
                        >= datetime.fromtimestamp(now, UTC)
                        - timedelta(minutes=self.settings.alarm_dedup_window_min),
                    )
                )
            status, detail = "sent", None
            repeats = event.change not in ("recovered", "retracted")
            if recent is not None and repeats and (event.level <= recent or late_text):
                status, detail = "deduplicated", "同一接收人同一报警对象在去重窗口内已通知"
            elif channel == "sms" and quiet and event.level < self.settings.alarm_quiet_min_level:
                status, detail = "quiet_hours", f"免打扰时段 {self.settings.alarm_quiet_hours}"
            else:
                try:
                    if channel == "sms":
                        detail = await self.sms.send(recipient, self.text_of(event))
                    else:
                        detail = await self._webhook(recipient, event)
                except WebhookRefused as exc:
                    status, detail = "failed", f"refused: {exc}"[:500]
                    _logger.warning("alarm webhook refused: %s", exc)
                except Exception as exc:
                    status, detail = "failed", f"{type(exc).__name__}: {exc}"[:500]
                    _logger.warning("alarm notification via %s failed: %s", channel, exc)
            async with self.db.transaction() as s:
                await s.execute(
                    insert(T.notification)
                    .values(
                        **key,
                        status=status,
                        detail=detail,
                        dedup_key=dedup_key,
                        created_at=datetime.fromtimestamp(now, UTC),
                    )
                    .on_conflict_do_nothing()
                )

    async def _texted(self, alarm_id: str) -> set[str]:
        """Who was sent a text about the alarm."""
        n = T.notification.c
        async with self.db.session() as s:
            rows = await s.execute(
                select(n.recipient).where(
                    n.alarm_id == alarm_id, n.channel == "sms", n.status == "sent"
                )
            )
            return {r[0] for r in rows}

    async def _webhook(self, url: str, event: AlarmChanged) -> str:
        body = json.dumps(
            {"type": "alarm", "data": event.model_dump(mode="json"), "text": self.text_of(event)},
            ensure_ascii=False,
        ).encode()
        headers = {"Content-Type": "application/json"}
        secret = self.settings.alarm_webhook_secret
        if secret is not None:
            digest = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256)
            headers["X-EcoWatt-Signature"] = "sha256=" + digest.hexdigest()
        await check_url(url, self.webhook_policy)
        timeout = self.settings.alarm_webhook_timeout_s
        async with guarded_client(self.webhook_policy, timeout) as client:
            response = await client.post(url, content=body, headers=headers)
            response.raise_for_status()
        return f"HTTP {response.status_code}"
