"""Notification rules: quiet hours, de-duplication, suppressed alarms, the log."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from ecowatt_alarm.notifications.notifier import Notifier, in_quiet_hours
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
        "/notifications", params={"page_size": 500}, headers=h.headers(Role.CITY_SUPERVISOR)
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


async def test_http_sms_provider_posts_with_the_api_key() -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from ecowatt_alarm.notifications.notifier import HttpSmsGateway

    seen: list[tuple[dict[str, str], str | None]] = []

    class Provider(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append((json.loads(body), self.headers.get("Authorization")))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"id": "m-1"}')

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gateway = HttpSmsGateway(
            f"http://127.0.0.1:{server.server_port}/sms", "k-123", "生态环境局"
        )
        reference = await gateway.send("13800000000", "测试短信")
    finally:
        server.shutdown()
    assert reference == '{"id": "m-1"}'
    assert seen == [
        ({"phone": "13800000000", "sign": "生态环境局", "text": "测试短信"}, "Bearer k-123")
    ]
