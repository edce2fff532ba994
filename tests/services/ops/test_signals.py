"""The platform's own signals: a service not ready, consumer lag over the bound, new dead
letters and many devices going offline at once open incidents once confirmed and resolve
them once gone; a restart of a few seconds opens nothing; the platform's check and
Alertmanager's alert of the same fault feed one incident; a new leader takes over the
incidents of the last one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ecowatt_ops.clocks.models import Level
from ecowatt_ops.desk.access import PLATFORM
from ecowatt_ops.incidents.service import apply_signal
from ecowatt_ops.settings import OpsSettings
from ecowatt_ops.signals.service import PlatformWatcher
from ecowatt_ops.status.models import (
    ConsumerLag,
    DatabaseState,
    DeadLetters,
    DeviceLinks,
    PlatformStatus,
    RedisState,
    ServiceHealth,
)
from sqlalchemy import text

from tests.services.ops.conftest import Desk
from tests.services.ops.test_alertmanager import HOOK, payload

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
SETTINGS = OpsSettings(environment="test", ops_signal_confirm_checks=2, ops_lag_warning=1000)


def status(
    *,
    alarm: str = "ready",
    lag: int = 0,
    dlq: int = 0,
    sessions: int = 100,
) -> PlatformStatus:
    return PlatformStatus(
        status="ok",
        checked_at=T0,
        services=[
            ServiceHealth(name="registry", url="u", status="ready"),
            ServiceHealth(
                name="alarm",
                url="u",
                status=alarm,  # type: ignore[arg-type]
                checks={"database": alarm == "ready"},
            ),
        ],
        consumers=[
            ConsumerLag(
                group="alarm.points",
                topic="telemetry.points",
                lag=lag,
                partitions=3,
                source="kafka",
            )
        ],
        dead_letters=[
            DeadLetters(
                topic="telemetry.readings.dlq", source_topic="telemetry.readings", messages=dlq
            )
        ],
        database=DatabaseState(ok=True),
        redis=RedisState(ok=True),
        devices=DeviceLinks(connections=sessions, sessions=sessions, ingest_instances=1),
    )


def keys(signals: list[Any]) -> list[tuple[str, bool]]:
    return [(s.correlation, s.firing) for s in signals]


def test_conditions_are_confirmed_before_they_open_and_before_they_clear() -> None:
    watcher = PlatformWatcher(SETTINGS)
    t = T0

    def step(**kwargs: Any) -> list[tuple[str, bool]]:
        nonlocal t
        t += timedelta(seconds=30)
        return keys(watcher.signals(watcher.observe(status(**kwargs), t), t))

    assert step() == []
    # a restart seen once opens nothing
    assert step(alarm="not_ready") == []
    assert step() == []
    # twice in a row: one signal; staying down: no repeats
    assert step(alarm="unreachable") == []
    assert step(alarm="unreachable") == [("service:alarm", True)]
    assert step(alarm="unreachable") == []
    # back for two checks: resolved
    assert step() == []
    assert step() == [("service:alarm", False)]
    # lag over the bound
    assert step(lag=5000) == []
    assert step(lag=5000) == [("lag:alarm.points:telemetry.points", True)]
    assert step(lag=10) == []
    assert step(lag=10) == [("lag:alarm.points:telemetry.points", False)]


def test_dead_letter_growth_and_devices_dropping_at_once() -> None:
    watcher = PlatformWatcher(SETTINGS)
    t = T0
    seen: list[tuple[str, bool]] = []
    for dlq, sessions in [(3, 100), (3, 100), (5, 100), (5, 100), (5, 70), (5, 70), (5, 95)]:
        t += timedelta(seconds=30)
        seen += keys(watcher.signals(watcher.observe(status(dlq=dlq, sessions=sessions), t), t))
    # the depth found at start is not new; growth is, and it stays bad for the quiet period
    # (15 min) so a second check confirms it; 30 % of devices gone at once; back to 95 %
    assert seen == [
        ("dlq:telemetry.readings", True),
        ("devices:offline", True),
    ]
    # devices back (two checks at 95 %); no new dead letters for a quarter of an hour, then
    # two checks: resolved in that order
    for _ in range(3):
        t += timedelta(minutes=8)
        seen += keys(watcher.signals(watcher.observe(status(dlq=5, sessions=95), t), t))
    assert seen[2:] == [("devices:offline", False), ("dlq:telemetry.readings", False)]
    # a fleet of a few test devices is not "many"
    small = PlatformWatcher(SETTINGS)
    for sessions in (10, 2, 2):
        t += timedelta(seconds=30)
        assert small.signals(small.observe(status(sessions=sessions), t), t) == []


@pytest.mark.integration
async def test_platform_and_alertmanager_feed_one_incident(desk: Desk) -> None:
    watcher = PlatformWatcher(desk.runtime.settings)
    settings = desk.runtime.settings
    desk.clock.now = t = T0

    async def round_(**kwargs: Any) -> list[tuple[str, str]]:
        nonlocal t
        t = desk.clock.advance(seconds=30)
        results = []
        for signal in watcher.signals(watcher.observe(status(**kwargs), t), t):
            async with desk.context.database.transaction() as session:
                outcome, _ = await apply_signal(
                    session=session, signal=signal, actor=PLATFORM, now=t, settings=settings
                )
            results.append((signal.correlation, outcome))
        return results

    assert await round_(alarm="unreachable") == []
    assert await round_(alarm="unreachable") == [("service:alarm", "opened")]
    # Prometheus sees the same fault: Alertmanager's alert joins the platform's incident
    response = await desk.client.post("/alertmanager", json=payload("firing"), headers=HOOK)
    (alert,) = response.json()["alerts"]
    assert alert["correlation"] == "service:alarm" and alert["outcome"] == "updated"
    # the platform sees it recover, but the alert still fires: not resolved yet
    assert await round_() == []
    assert await round_() == [("service:alarm", "updated")]
    resolved = payload("resolved", ends=desk.clock.now)
    response = await desk.client.post("/alertmanager", json=resolved, headers=HOOK)
    assert response.json()["alerts"][0]["outcome"] == "resolved"
    async with desk.context.database.session() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT status, source, level, signals FROM ops.incident"
                    " WHERE correlation = 'service:alarm'"
                )
            )
        ).all()
    assert len(rows) == 1
    status_, source, level, signals = rows[0]
    assert (status_, source, level) == ("resolved", "platform", Level.MAJOR.value)
    assert set(signals) == {"platform", "alertmanager:a1b2c3d4e5f60718"}


@pytest.mark.integration
async def test_a_new_leader_resolves_what_the_last_one_opened(desk: Desk) -> None:
    first = PlatformWatcher(desk.runtime.settings)
    settings = desk.runtime.settings
    t = desk.clock.advance(hours=1)
    opened = []
    for _ in range(2):
        t += timedelta(seconds=30)
        for signal in first.signals(first.observe(status(lag=50_000), t), t):
            async with desk.context.database.transaction() as session:
                opened.append(
                    await apply_signal(
                        session=session, signal=signal, actor=PLATFORM, now=t, settings=settings
                    )
                )
    assert [o for o, _ in opened] == ["opened"]
    # the leader dies; the lag is gone when the next one starts
    second = PlatformWatcher(desk.runtime.settings)
    async with desk.context.database.session() as session:
        await second.seed(session)
    resolved = []
    for _ in range(2):
        t += timedelta(seconds=30)
        resolved += second.signals(second.observe(status(lag=0), t), t)
    assert [(s.correlation, s.firing) for s in resolved] == [
        ("lag:alarm.points:telemetry.points", False)
    ]
