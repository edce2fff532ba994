"""Notification rules: quiet hours, de-duplication, suppressed alarms, the log."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from ecowatt_alarm.notify import Notifier, in_quiet_hours
from ecowatt_kernel.contracts import AlarmChanged
from ecowatt_kernel.identity import Role

from .conftest import CityRun, FakeClock, Harness, RecordingSms

pytestmark = pytest.mark.integration


def test_quiet_hours_wrap_midnight() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    assert in_quiet_hours("22:00-07:00", datetime(2026, 1, 1, 23, 30, tzinfo=tz))
    assert in_quiet_hours("22:00-07:00", datetime(2026, 1, 1, 6, 59, tzinfo=tz))
    assert not in_quiet_hours("22:00-07:00", datetime(2026, 1, 1, 7, 0, tzinfo=tz))
    assert not in_quiet_hours(None, datetime(2026, 1, 1, 23, 0, tzinfo=tz))


def _event(alarm_id: str, enterprise: str, level: int = 1, change: str = "opened") -> AlarmChanged:
    now = datetime.now(UTC)
    return AlarmChanged(
        alarm_id=alarm_id,
        enterprise_id=enterprise,
        rule_code="R1",
        rule_version=1,
        subject_id=f"{enterprise}-G",
        change=change,
        status="open",  # type: ignore[arg-type]
        level=level,
        opened_at=now,
        changed_at=now,
        explanation="测试",
        district_code="610113",
    )


async def test_quiet_hours_and_dedup(city_run: CityRun, harness: Harness) -> None:
    h = harness
    enterprise = city_run.city.enterprise("healthy").id
    r = await h.client.put(
        "/district-contacts",
        json={"district_code": "610113", "name": "值班员", "phone": "13900000000", "min_level": 1},
        headers=h.headers(Role.CITY_SUPERVISOR),
    )
    assert r.status_code == 200, r.text
    night = datetime(2026, 11, 21, 23, 30, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    sms = RecordingSms()
    settings = h.settings.model_copy(
        update={"alarm_quiet_hours": "22:00-07:00", "alarm_webhook_urls": ()}
    )
    notifier = Notifier(
        database=h.processor.db,
        settings=settings,
        view=h.processor.view,
        sms=sms,
        clock=FakeClock(night),
    )
    await notifier.notify(_event("N-1", enterprise, level=1))
    assert sms.sent == [], "level 1 waits out the quiet hours"
    await notifier.notify(_event("N-2", enterprise, level=3))
    assert len(sms.sent) == 2, "severe alarms break the quiet hours (enterprise + district)"
    await notifier.notify(_event("N-2", enterprise, level=3))
    assert len(sms.sent) == 2, "a redelivered event is not sent twice"
    await notifier.notify(_event("N-3", enterprise, level=3))
    assert len(sms.sent) == 2, "the same subject within the window is de-duplicated"
    await notifier.notify(_event("N-4", enterprise, level=3, change="updated"))
    assert len(sms.sent) == 2, "updates do not notify"
    suppressed = _event("N-5", enterprise, level=3).model_copy(update={"status": "suppressed"})
    await notifier.notify(suppressed)
    r = await h.client.get(
        "/notifications", params={"limit": 1000}, headers=h.headers(Role.CITY_SUPERVISOR)
    )
    assert r.status_code == 200
    statuses = {}
    async with h.processor.db.session() as s:
        from ecowatt_alarm.tables import notification
        from sqlalchemy import select

        for row in await s.execute(select(notification).where(notification.c.alarm_id.like("N-%"))):
            statuses.setdefault(row.alarm_id, set()).add(row.status)
    assert statuses["N-1"] == {"quiet_hours"}
    assert statuses["N-2"] == {"sent"}
    assert statuses["N-3"] == {"deduplicated"}
    assert "N-4" not in statuses and "N-5" not in statuses
