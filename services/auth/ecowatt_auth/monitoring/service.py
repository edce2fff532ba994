"""The security monitor: consumes `audit.events` and `hj212.frames` (group `auth.monitor`)
and raises security alerts.

Counting rules keep a sliding window per subject in Redis (a sorted set of event ids scored
by event time, so a redelivered event counts once and a replay counts in its own time);
when the count reaches the rule's threshold an alert is raised — or, while an alert of the
same rule and subject is still open or acknowledged, that alert is updated (count, last
seen, evidence) instead of raising another. Single-event rules (odd hours, new address)
raise at once, with the same de-duplication.

New alerts are sent to the configured webhooks (signed) and, for medium and high severity,
by SMS to the security officers' phones.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.bus import Record
from ecowatt_kernel.contracts import AuditEvent, ContractError, FrameReceived, decode
from ecowatt_kernel.db import Database
from ecowatt_kernel.notify import SmsGateway, post_webhook, sms_gateway
from ecowatt_kernel.redis_client import Redis
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ecowatt_auth.monitoring.models import RuleInfo, security_alert, security_alert_action
from ecowatt_auth.settings import AuthSettings

__all__ = ["RULES", "Monitor", "rule_catalogue"]

_logger = logging.getLogger(__name__)

LOGIN_ACTIONS = frozenset({"auth.login", "auth.token", "auth.password.change"})
LOGIN_FAILURES = frozenset({"wrong user name or password", "wrong second factor", "account locked"})


@dataclass(frozen=True)
class RuleSpec:
    code: str
    name: str
    severity: str
    description: str
    threshold: Callable[[AuthSettings], int] | None = None
    window: Callable[[AuthSettings], int] | None = None


RULES: dict[str, RuleSpec] = {
    r.code: r
    for r in (
        RuleSpec(
            "brute_force_account",
            "账号暴力破解",
            "high",
            "Failed logins for one user name (wrong password or code, or hammering a locked "
            "account) reach the threshold within the window.",
            lambda s: s.auth_monitor_brute_force_account,
            lambda s: s.auth_monitor_brute_force_window_s,
        ),
        RuleSpec(
            "brute_force_address",
            "来源地址暴力破解",
            "high",
            "Failed logins from one address, whatever the user names, reach the threshold "
            "within the window (password spraying).",
            lambda s: s.auth_monitor_brute_force_address,
            lambda s: s.auth_monitor_brute_force_window_s,
        ),
        RuleSpec(
            "repeated_denials",
            "越权访问",
            "medium",
            "One identity is refused (403: role or data scope) repeatedly within the window.",
            lambda s: s.auth_monitor_denials,
            lambda s: s.auth_monitor_denials_window_s,
        ),
        RuleSpec(
            "export_volume",
            "异常批量导出",
            "medium",
            "One identity exports (Excel downloads) more often than the threshold within the "
            "window.",
            lambda s: s.auth_monitor_exports,
            lambda s: s.auth_monitor_exports_window_s,
        ),
        RuleSpec(
            "odd_hour_login",
            "非工作时间登录",
            "low",
            "A successful login inside the odd hours (local time, ECOWATT_AUTH_MONITOR_ODD_HOURS).",
        ),
        RuleSpec(
            "new_address_login",
            "新地址登录",
            "medium",
            "A successful login from an address the account has never logged in from before "
            "(not its very first login).",
        ),
        RuleSpec(
            "device_auth_failures",
            "设备认证失败激增",
            "high",
            "HJ 212 frames refused for a wrong PW reach the threshold within the window, for "
            "one device (MN) or across the platform.",
            lambda s: s.auth_monitor_device_failures_per_device,
            lambda s: s.auth_monitor_device_failures_window_s,
        ),
    )
}


def rule_catalogue(settings: AuthSettings) -> list[RuleInfo]:
    return [
        RuleInfo(
            code=r.code,
            name=r.name,
            severity=r.severity,  # type: ignore[arg-type]
            description=r.description,
            threshold=r.threshold(settings) if r.threshold else None,
            window_s=r.window(settings) if r.window else None,
        )
        for r in RULES.values()
    ]


def _in_hours(spec: str, local: datetime) -> bool:
    start_s, _, end_s = spec.partition("-")
    start, end = time.fromisoformat(start_s.strip()), time.fromisoformat(end_s.strip())
    now = local.time()
    return start <= now < end if start <= end else (now >= start or now < end)


class Monitor:
    """Applies the rules to consumed records (see the module docstring)."""

    def __init__(
        self,
        *,
        database: Database,
        redis: Redis,
        settings: AuthSettings,
        sms: SmsGateway | None = None,
    ) -> None:
        self.db = database
        self.redis = redis
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)
        self._reported: dict[str, int] = {}
        secret = settings.auth_sms_api_key
        self.sms = sms or sms_gateway(
            provider="http" if settings.auth_sms_url else "log",
            url=settings.auth_sms_url,
            api_key=secret.get_secret_value() if secret else None,
            sign=settings.auth_sms_sign,
        )

    # ----------------------------------------------------------------- consuming

    async def handle(self, records: Sequence[Record]) -> None:
        for record in records:
            # Most frames are accepted: skip them without decoding the envelope.
            frames = self.settings.auth_monitor_frames_topic
            if record.topic == frames and b'"reason_code":null' in record.value:
                continue
            try:
                envelope = decode(record)
            except ContractError:
                continue
            event = envelope.data
            if isinstance(event, AuditEvent):
                await self.on_audit(str(envelope.id), event)
            elif isinstance(event, FrameReceived):
                await self.on_frame(str(envelope.id), event)

    async def on_audit(self, event_id: str, event: AuditEvent) -> None:
        details = event.details or {}
        at = event.at
        if event.action in LOGIN_ACTIONS:
            reason = details.get("reason")
            if event.outcome != "success" and reason in LOGIN_FAILURES:
                username = str(details.get("username") or event.actor)
                evidence = {"username": username, "source_ip": event.source_ip, "reason": reason}
                await self.count(
                    "brute_force_account",
                    username,
                    event_id,
                    at,
                    evidence,
                    f"账号 {username} 登录失败次数过多",
                )
                if event.source_ip:
                    await self.count(
                        "brute_force_address",
                        event.source_ip,
                        event_id,
                        at,
                        evidence,
                        f"来源地址 {event.source_ip} 登录失败次数过多",
                    )
            elif event.outcome == "success" and event.action in ("auth.login", "auth.token"):
                await self.on_login(event, details)
            return
        if (
            event.outcome == "denied"
            and details.get("status") == 403
            and event.actor_kind != "anonymous"
        ):
            await self.count(
                "repeated_denials",
                event.actor,
                event_id,
                at,
                {
                    "name": details.get("name"),
                    "last_path": details.get("path"),
                    "source_ip": event.source_ip,
                },
                f"{details.get('name') or event.actor} 多次越权访问被拒绝",
            )
        if event.outcome == "success" and details.get("export"):
            await self.count(
                "export_volume",
                event.actor,
                event_id,
                at,
                {
                    "name": details.get("name"),
                    "last_path": details.get("path"),
                    "source_ip": event.source_ip,
                },
                f"{details.get('name') or event.actor} 导出次数异常",
            )

    async def on_login(self, event: AuditEvent, details: dict[str, Any]) -> None:
        username = str(details.get("username") or event.actor)
        local = event.at.astimezone(self.zone)
        evidence = {
            "username": username,
            "source_ip": event.source_ip,
            "local_time": local.isoformat(timespec="seconds"),
        }
        if self.settings.auth_monitor_odd_hours and _in_hours(
            self.settings.auth_monitor_odd_hours, local
        ):
            await self.raise_alert(
                "odd_hour_login",
                username,
                event.at,
                evidence,
                f"{username} 在非工作时间登录",
                1,
                single=True,
            )
        if details.get("new_address") and event.source_ip:
            await self.raise_alert(
                "new_address_login",
                f"{username}@{event.source_ip}",
                event.at,
                evidence,
                f"{username} 从新地址 {event.source_ip} 登录",
                1,
                single=True,
            )

    async def on_frame(self, event_id: str, frame: FrameReceived) -> None:
        if frame.reason_code not in self.settings.auth_monitor_device_failure_reasons:
            return
        host = frame.peer.rsplit(":", 1)[0]
        evidence = {"mn": frame.mn, "peer": host, "reason": frame.reason}
        if frame.mn:
            await self.count(
                "device_auth_failures",
                f"device:{frame.mn}",
                event_id,
                frame.received_at,
                evidence,
                f"设备 {frame.mn} 密码认证失败激增",
            )
        await self.count(
            "device_auth_failures",
            "platform",
            event_id,
            frame.received_at,
            evidence,
            "全平台设备密码认证失败激增",
            threshold=self.settings.auth_monitor_device_failures_platform,
        )

    # ------------------------------------------------------------------ counting

    async def count(
        self,
        rule: str,
        subject: str,
        event_id: str,
        at: datetime,
        evidence: dict[str, Any],
        title: str,
        *,
        threshold: int | None = None,
    ) -> int:
        """Add the event to the rule's window for `subject`; raise or update the alert when
        the count reaches the threshold (and at each further multiple of it)."""
        spec = RULES[rule]
        assert spec.threshold is not None and spec.window is not None
        limit = threshold or spec.threshold(self.settings)
        window = spec.window(self.settings)
        key = f"auth:monitor:{rule}:{subject}"
        moment = at.timestamp()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {event_id: moment})
            pipe.zremrangebyscore(key, "-inf", moment - window)
            # events of other partitions may arrive later with earlier times: count
            # everything from this event's window start on, not only up to it
            pipe.zcount(key, moment - window, "+inf")
            pipe.expire(key, window + 60)
            _, _, count, _ = await pipe.execute()
        count = int(count)
        # Raise at the threshold, then update the alert each time another `limit` events
        # arrived (not on every event of a flood).
        reported = self._reported.get(key)
        if count >= limit and (reported is None or count >= reported + limit):
            if len(self._reported) > 100_000:
                self._reported.clear()
            self._reported[key] = count
            await self.raise_alert(
                rule,
                subject,
                at,
                {**evidence, "window_s": window, "threshold": limit},
                title,
                count,
            )
        elif reported is not None and count < limit:
            del self._reported[key]  # the burst is over: a new one raises again
        return count

    # ------------------------------------------------------------------- alerts

    async def raise_alert(
        self,
        rule: str,
        subject: str,
        at: datetime,
        evidence: dict[str, Any],
        title: str,
        count: int,
        *,
        single: bool = False,
    ) -> tuple[str, bool]:
        """Open an alert, or update the open one of this rule and subject; returns its id
        and whether it is new."""
        spec = RULES[rule]
        alert_id = uuid.uuid4().hex
        async with self.db.transaction() as session:
            statement = pg_insert(security_alert).values(
                id=alert_id,
                rule=rule,
                severity=spec.severity,
                subject=subject,
                title=title,
                status="open",
                count=count,
                first_seen=at,
                last_seen=at,
                evidence=evidence,
            )
            upsert = statement.on_conflict_do_update(
                index_elements=[security_alert.c.rule, security_alert.c.subject],
                # the partial unique index's predicate, literally (parameters cannot match it)
                index_where=text("status IN ('open','acknowledged')"),
                set_={
                    # single events add one; windows report their (larger) current count
                    "count": security_alert.c.count + 1
                    if single
                    else func.greatest(security_alert.c.count, count),
                    "last_seen": func.greatest(security_alert.c.last_seen, at),
                    "evidence": evidence,
                },
            ).returning(security_alert.c.id)
            stored_id = (await session.execute(upsert)).scalar_one()
            created = stored_id == alert_id
            if created:
                await session.execute(
                    insert(security_alert_action).values(
                        alert_id=alert_id,
                        actor="system",
                        action="raised",
                        status="open",
                        note=title,
                    )
                )
        if created:
            _logger.warning("security alert %s (%s): %s", rule, spec.severity, title)
            await self.notify(stored_id, spec, title, subject, evidence)
        return stored_id, created

    async def notify(
        self, alert_id: str, spec: RuleSpec, title: str, subject: str, evidence: dict[str, Any]
    ) -> None:
        """Send a new alert to the webhooks and (medium and high) the officers' phones; each
        attempt is written to the alert's journal."""
        settings = self.settings
        attempts: list[tuple[str, str]] = []
        payload = {
            "type": "security_alert",
            "id": alert_id,
            "rule": spec.code,
            "rule_name": spec.name,
            "severity": spec.severity,
            "subject": subject,
            "title": title,
            "evidence": evidence,
            "at": datetime.now(UTC).isoformat(),
        }
        secret = settings.auth_alert_webhook_secret
        for url in settings.auth_alert_webhook_urls:
            try:
                result = await post_webhook(
                    url, payload, secret=secret.get_secret_value() if secret else None
                )
            except Exception as exc:
                result = f"failed: {type(exc).__name__}: {exc}"[:300]
                _logger.warning("security alert webhook failed: %s", exc)
            attempts.append((f"webhook {url}", result))
        if spec.severity in ("medium", "high"):
            text = f"【{settings.auth_sms_sign}】安全告警（{spec.name}）：{title}"[:300]
            for phone in settings.auth_alert_sms_phones:
                try:
                    result = await self.sms.send(phone, text)
                except Exception as exc:
                    result = f"failed: {type(exc).__name__}: {exc}"[:300]
                attempts.append((f"sms {phone[:3]}****{phone[-4:]}", result))
        if not attempts:
            return
        async with self.db.transaction() as session:
            for channel, result in attempts:
                await session.execute(
                    insert(security_alert_action).values(
                        alert_id=alert_id,
                        actor="system",
                        action="notified",
                        note=f"{channel}: {result}",
                    )
                )

    async def open_alerts(self, rule: str | None = None) -> list[dict[str, Any]]:
        """Alerts being worked on (tests and the operations page)."""
        async with self.db.session() as session:
            query = select(security_alert).where(
                security_alert.c.status.in_(("open", "acknowledged"))
            )
            if rule:
                query = query.where(security_alert.c.rule == rule)
            return [dict(r) for r in (await session.execute(query)).mappings()]


async def handle_alert(session: Any, *, alert_id: str, status: str, note: str, actor: str) -> None:
    """Record a handling step and set the alert's status."""
    now = datetime.now(UTC)
    await session.execute(
        update(security_alert)
        .where(security_alert.c.id == alert_id)
        .values(status=status, handled_by=actor, handled_at=now, note=note)
    )
    await session.execute(
        insert(security_alert_action).values(
            alert_id=alert_id, actor=actor, action="handled", status=status, note=note
        )
    )
