"""The gateway's live stream (`GET /api/live/stream`, Server-Sent Events) on the running
platform: an alarm change reaches a city supervisor's stream within seconds, never the stream
of a district officer of another district; callers without credentials are refused."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.web.conftest import Platform

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Listener:
    """Reads one stream in a thread and keeps every batch item and event name."""

    def __init__(self, platform: Platform, token: str) -> None:
        self.items: list[dict[str, Any]] = []
        self.events: list[str] = []
        self.status: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(platform, token), daemon=True)
        self._thread.start()

    def _run(self, platform: Platform, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        timeout = httpx.Timeout(10, read=30)
        with (
            httpx.Client(base_url=platform.base_url, timeout=timeout) as client,
            client.stream("GET", "/api/live/stream", headers=headers) as response,
        ):
            self.status = response.status_code
            event = "message"
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                    self.events.append(event)
                elif line.startswith("data:") and event == "batch":
                    self.items.extend(json.loads(line.split(":", 1)[1]))

    def wait(self, predicate: Any, limit_s: float) -> dict[str, Any] | None:
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            for item in list(self.items):
                if predicate(item):
                    return item
            time.sleep(0.2)
        return None

    def close(self) -> None:
        self._stop.set()


@pytest.mark.timeout(900)  # waits for the first R1 alarm of a fresh platform
def test_alarm_changes_reach_only_the_streams_whose_scope_holds_them(platform: Platform) -> None:
    platform.shorten_r1()
    alarm = platform.wait_for_r1()
    with platform.api() as client:
        districts = client.get("/api/registry/reference/districts").json()
    other = next(
        d["code"]
        for d in districts
        if d["parent"] == "610100" and d["code"] != alarm["district_code"]
    )
    tag = uuid.uuid4().hex[:6]
    platform.create_user(f"live.city.{tag}", "city_supervisor", {"kind": "city"}, "Start-Pass!l1v3")
    platform.create_user(
        f"live.district.{tag}",
        "district_officer",
        {"kind": "districts", "districts": [other]},
        "Start-Pass!l1v3",
    )
    city = Listener(
        platform, platform.user_token(f"live.city.{tag}", "Start-Pass!l1v3", "Live-City!9x2026")
    )
    district = Listener(
        platform, platform.user_token(f"live.district.{tag}", "Start-Pass!l1v3", "Live-Dist!9x2026")
    )
    try:
        assert city.wait(lambda _: False, 0) is None
        deadline = time.monotonic() + 15
        while "hello" not in city.events or "hello" not in district.events:
            assert time.monotonic() < deadline, "the streams did not open"
            time.sleep(0.2)
        assert city.status == 200 and district.status == 200

        with platform.api() as client:
            answer = client.post(
                f"/api/alarm/alarms/{alarm['id']}/dispatch", json={"note": "live stream test"}
            )
        assert answer.status_code == 200, answer.text

        seen = city.wait(
            lambda i: i.get("alarm_id") == alarm["id"] and i.get("status") == "dispatched", 20
        )
        assert seen is not None, "the supervisor's stream did not get the dispatched alarm"
        assert seen["type"] == "alarm" and seen["enterprise_id"] == alarm["enterprise_id"]
        assert seen["rule_code"] == "R1" and "district_code" not in seen
        time.sleep(3)  # the district stream had the same batches to get it
        assert not [i for i in district.items if i["enterprise_id"] == alarm["enterprise_id"]]
        with platform.api() as client:
            for item in district.items[:20]:
                answer = client.get(f"/api/registry/enterprises/{item['enterprise_id']}")
                assert answer.json()["district_code"] == other
    finally:
        city.close()
        district.close()


def test_the_stream_needs_a_person(platform: Platform) -> None:
    anonymous = httpx.get(f"{platform.base_url}/api/live/stream", timeout=10)
    assert anonymous.status_code == 401
    wrong = httpx.get(
        f"{platform.base_url}/api/live/other",
        timeout=10,
        headers={"Authorization": f"Bearer {platform.token}"},
    )
    assert wrong.status_code == 404
    keyed = httpx.get(
        f"{platform.base_url}/api/live/stream",
        headers={"X-API-Key": "ewk_0123456789abcdef_" + "x" * 43},
        timeout=10,
    )
    assert keyed.status_code in (401, 403)
