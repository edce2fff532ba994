"""From alerts and the platform's status to incidents.

Correlation. An alert of the rules in `deploy/prometheus/rules` and the platform's own check
of the same condition share one key, so that they feed one incident:

| Condition | Key | Alert | Level (platform) |
|---|---|---|---|
| ingest down / not ready | `service:ingest-hj212` | EcoWattIngestDown | 非常严重 |
| another service down / not ready | `service:<name>` | EcoWattServiceDown | 严重 |
| PostgreSQL out | `storage:postgres` | EcoWattPostgresDown | 非常严重 |
| Redis out | `storage:redis` | EcoWattRedisDown | 严重 |
| consumer lag over the bound | `lag:<group>:<topic>` | EcoWattConsumerLagHigh | 中等 |
| new dead letters | `dlq:<topic>` | EcoWattDeadLetters | 中等 |
| many devices offline at once | `devices:offline` | EcoWattDeviceSessionsDrop | 严重 |

Any other alert is its own incident (`alert:<fingerprint>`); its level comes from the
`fault_level` label (非常严重 … 一般), else `severity`.

The platform watcher (`PlatformWatcher`) looks at the same status the status page shows
(`status.service.platform_status`) every `ECOWATT_OPS_SIGNALS_EVERY_S` seconds. A condition
must hold for `ECOWATT_OPS_SIGNAL_CONFIRM_CHECKS` checks in a row to open an incident and be
gone as long to resolve it; its state lives in the leader's memory and is re-seeded from the
active platform incidents when a leader starts, so a condition that cleared while no
watcher ran is still resolved.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from ecowatt_kernel.app import ServiceContext
from ecowatt_kernel.db import Database
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_ops.clocks.models import Level, parse_level
from ecowatt_ops.desk.access import ALERTMANAGER, PLATFORM
from ecowatt_ops.desk.settings import DeskSettings
from ecowatt_ops.incidents.models import ACTIVE, incident
from ecowatt_ops.incidents.service import Outcome, SignalInput, apply_signal
from ecowatt_ops.settings import OpsSettings
from ecowatt_ops.signals.models import AlertIn, AlertmanagerPayload, AlertOutcome
from ecowatt_ops.status.models import PlatformStatus
from ecowatt_ops.status.service import platform_status

__all__ = [
    "Observation",
    "PlatformWatcher",
    "correlation_of",
    "receive_alertmanager",
    "signal_of_alert",
]

_logger = logging.getLogger(__name__)
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
"""Alertmanager writes endsAt 0001-01-01 for an alert that has not ended."""


def _fingerprint(alert: AlertIn) -> str:
    if alert.fingerprint:
        return alert.fingerprint
    labels = json.dumps(alert.labels, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(labels.encode()).hexdigest()[:16]


def correlation_of(labels: dict[str, str], fingerprint: str) -> str:
    """The incident key of an alert (see the module docstring)."""
    name = labels.get("alertname", "")
    service, group, topic = labels.get("service"), labels.get("group"), labels.get("topic")
    if name == "EcoWattIngestDown":
        return "service:ingest-hj212"
    if name == "EcoWattServiceDown" and service:
        return f"service:{service}"
    if name == "EcoWattPostgresDown":
        return "storage:postgres"
    if name == "EcoWattRedisDown":
        return "storage:redis"
    if name == "EcoWattConsumerLagHigh" and group and topic:
        return f"lag:{group}:{topic}"
    if name == "EcoWattDeadLetters" and topic:
        return f"dlq:{topic}"
    if name == "EcoWattDeviceSessionsDrop":
        return "devices:offline"
    return f"alert:{fingerprint}"


def signal_of_alert(alert: AlertIn) -> SignalInput:
    """The signal an Alertmanager alert gives."""
    fingerprint = _fingerprint(alert)
    labels, notes = alert.labels, alert.annotations
    ends = alert.endsAt if alert.endsAt and alert.endsAt > EARLIEST else None
    return SignalInput(
        correlation=correlation_of(labels, fingerprint),
        source="alertmanager",
        source_key=f"alertmanager:{fingerprint}",
        firing=alert.status == "firing",
        starts_at=alert.startsAt,
        ends_at=None if alert.status == "firing" else ends,
        level=parse_level(labels.get("fault_level"), labels.get("severity")),
        title=notes.get("summary") or labels.get("alertname") or "监控告警",
        description="\n".join(v for v in (notes.get("description"), notes.get("runbook_url")) if v),
        affected_function=labels.get("service") or labels.get("alertname", ""),
        hardware=labels.get("hardware", "").lower() == "true",
        labels=dict(labels),
        annotations=dict(notes),
    )


async def receive_alertmanager(
    *, db: Database, payload: AlertmanagerPayload, settings: DeskSettings, now: datetime
) -> list[AlertOutcome]:
    """Apply every alert of a notification, one transaction each (idempotent)."""
    outcomes = []
    for alert in payload.alerts:
        signal = signal_of_alert(alert)
        async with db.transaction() as session:
            outcome, incident_id = await apply_signal(
                session=session, signal=signal, actor=ALERTMANAGER, now=now, settings=settings
            )
        outcomes.append(
            AlertOutcome(
                fingerprint=signal.source_key.split(":", 1)[1],
                correlation=signal.correlation,
                outcome=outcome,
                incident_id=incident_id,
            )
        )
    return outcomes


# -------------------------------------------------------------------- platform signals


@dataclass(frozen=True)
class Observation:
    """One condition seen in one status: bad or not, and what to say if it is."""

    key: str
    bad: bool
    level: Level
    title: str
    description: str = ""
    affected_function: str = ""


@dataclass
class _Condition:
    firing: bool = False
    since: datetime | None = None
    bad_checks: int = 0
    good_checks: int = 0
    last: Observation | None = None


@dataclass
class PlatformWatcher:
    """Turns successive platform statuses into incident signals (see the module docstring)."""

    settings: OpsSettings
    conditions: dict[str, _Condition] = field(default_factory=dict)
    sessions_seen: deque[tuple[datetime, int]] = field(default_factory=deque)
    dlq_depth: dict[str, int] = field(default_factory=dict)
    dlq_grew_at: dict[str, datetime] = field(default_factory=dict)
    seeded: bool = False

    def observe(self, status: PlatformStatus, now: datetime) -> list[Observation]:
        """The conditions one status shows (pure but for the DLQ and session history)."""
        s = self.settings
        found: list[Observation] = []
        for service in status.services:
            if service.name == "kafka":
                continue
            ingest = service.name.startswith("ingest")
            word = "不可达" if service.status == "unreachable" else "未就绪"
            failing = sorted(k for k, ok in service.checks.items() if not ok)
            found.append(
                Observation(
                    key=f"service:{service.name}",
                    bad=service.status != "ready",
                    level=Level.CRITICAL if ingest else Level.MAJOR,
                    title=f"服务 {service.name} {word}",
                    description=(
                        f"失败的检查：{', '.join(failing)}" if failing else service.error or ""
                    ),
                    affected_function=service.name,
                )
            )
        found.append(
            Observation(
                key="storage:postgres",
                bad=not status.database.ok,
                level=Level.CRITICAL,
                title="PostgreSQL 无响应",
                description=status.database.error or "",
                affected_function="PostgreSQL",
            )
        )
        found.append(
            Observation(
                key="storage:redis",
                bad=not status.redis.ok,
                level=Level.MAJOR,
                title="Redis 无响应",
                description=status.redis.error or "",
                affected_function="Redis",
            )
        )
        for consumer in status.consumers:
            found.append(
                Observation(
                    key=f"lag:{consumer.group}:{consumer.topic}",
                    bad=consumer.lag > s.ops_lag_warning,
                    level=Level.MODERATE,
                    title=f"消费者组 {consumer.group} 在 {consumer.topic} 上积压 {consumer.lag} 条",
                    affected_function=consumer.group.split(".", 1)[0],
                )
            )
        quiet = timedelta(seconds=s.ops_dlq_quiet_s)
        for dead in status.dead_letters:
            if dead.messages is None:
                continue
            before = self.dlq_depth.get(dead.topic)
            if before is not None and dead.messages > before:
                self.dlq_grew_at[dead.topic] = now
            self.dlq_depth[dead.topic] = dead.messages
            grew = self.dlq_grew_at.get(dead.topic)
            found.append(
                Observation(
                    key=f"dlq:{dead.source_topic}",
                    bad=grew is not None and now - grew < quiet,
                    level=Level.MODERATE,
                    title=f"{dead.source_topic} 出现新的死信（共 {dead.messages} 条）",
                    description=f"死信主题 {dead.topic}",
                    affected_function=dead.source_topic,
                )
            )
        window = timedelta(seconds=s.ops_offline_window_s)
        sessions = status.devices.sessions
        self.sessions_seen.append((now, sessions))
        while self.sessions_seen and now - self.sessions_seen[0][0] > window:
            self.sessions_seen.popleft()
        peak = max(count for _, count in self.sessions_seen)
        dropped = (
            peak >= s.ops_offline_min_devices and sessions < (1 - s.ops_offline_drop_share) * peak
        )
        found.append(
            Observation(
                key="devices:offline",
                bad=dropped,
                level=Level.MAJOR,
                title=f"大量设备同时离线：在线 {sessions} 台（{int(window.total_seconds() // 60)} "
                f"分钟内最多 {peak} 台）",
                affected_function="数据接入",
            )
        )
        return found

    def signals(self, observations: Iterable[Observation], now: datetime) -> list[SignalInput]:
        """The incident signals of one round: conditions that became confirmed or cleared."""
        confirm = self.settings.ops_signal_confirm_checks
        seen = set()
        out: list[SignalInput] = []
        for observation in observations:
            seen.add(observation.key)
            state = self.conditions.setdefault(observation.key, _Condition())
            if observation.bad:
                state.bad_checks += 1
                state.good_checks = 0
                state.last = observation
                if not state.firing and state.bad_checks >= confirm:
                    state.firing, state.since = True, now
                    out.append(self._signal(observation, state, now, firing=True))
            else:
                state.good_checks += 1
                state.bad_checks = 0
                if state.firing and state.good_checks >= confirm:
                    out.append(self._signal(state.last or observation, state, now, firing=False))
                    state.firing = False
        for key, state in self.conditions.items():
            # a condition that disappeared (a consumer group removed) counts as cleared
            if key not in seen and state.firing:
                state.good_checks += 1
                if state.good_checks >= confirm and state.last is not None:
                    out.append(self._signal(state.last, state, now, firing=False))
                    state.firing = False
        return out

    @staticmethod
    def _signal(
        observation: Observation, state: _Condition, now: datetime, *, firing: bool
    ) -> SignalInput:
        return SignalInput(
            correlation=observation.key,
            source="platform",
            source_key="platform",
            firing=firing,
            starts_at=state.since or now,
            ends_at=None if firing else now,
            level=observation.level,
            title=observation.title,
            description=observation.description,
            affected_function=observation.affected_function,
        )

    async def seed(self, session: AsyncSession) -> None:
        """Take over the platform incidents a previous leader left active."""
        rows = (
            await session.execute(
                select(incident.c.correlation, incident.c.signals, incident.c.title).where(
                    incident.c.status.in_(ACTIVE), incident.c.correlation.is_not(None)
                )
            )
        ).all()
        for correlation, signals, title in rows:
            mine = signals.get("platform")
            if mine and mine.get("status") == "firing":
                self.conditions[correlation] = _Condition(
                    firing=True,
                    since=datetime.fromisoformat(mine["starts_at"]),
                    last=Observation(
                        key=correlation,
                        bad=True,
                        level=Level(mine.get("level", "moderate")),
                        title=mine.get("title") or title,
                        description=mine.get("description", ""),
                    ),
                )
        self.seeded = True

    async def run(self, *, context: ServiceContext, now: datetime) -> list[tuple[str, Outcome]]:
        """One round: read the status, apply the signals it gives."""
        settings = self.settings
        if not self.seeded:
            async with context.database.session() as session:
                await self.seed(session)
        async with httpx.AsyncClient(timeout=settings.ops_probe_timeout_s) as client:
            status = await platform_status(context=context, client=client)
        results: list[tuple[str, Outcome]] = []
        for signal in self.signals(self.observe(status, now), now):
            try:
                async with context.database.transaction() as session:
                    outcome, _ = await apply_signal(
                        session=session, signal=signal, actor=PLATFORM, now=now, settings=settings
                    )
            except Exception:
                _logger.exception("platform signal %s not applied", signal.correlation)
                continue
            results.append((signal.correlation, outcome))
        return results
