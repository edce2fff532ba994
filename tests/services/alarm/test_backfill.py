"""Late data through the real service (Kafka, PostgreSQL): an enterprise's devices are cut
off for 3 hours while its control facility is stopped, then back-fill what they kept. The
OFFLINE alarms raised during the outage are retracted with their reason and published as
such; the stop is found as a late R1 — one text for the enterprise, not one per alarm — and
the offline states the outage suggested are withdrawn from the state history."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import pytest
from alarm_city import SyntheticCity
from ecowatt_kernel.contracts import PointReading
from ecowatt_kernel.identity import Role

from .conftest import CITY_DAY, Harness

pytestmark = pytest.mark.integration


async def _send(h: Harness, readings: list[PointReading], now: float) -> None:
    p = h.processor
    h.clock.now = now
    target = p.readings_applied + len(readings)
    await h.publish(readings, h.settings.alarm_points_topic)  # type: ignore[arg-type]
    await h.wait_for(lambda: p.readings_applied >= target, limit_s=60)
    await p.tick()


async def test_backfill_retracts_offline_and_reports_the_stop_as_a_late_finding(
    harness: Harness,
) -> None:
    h = harness
    clock = h.clock.now
    try:
        await _outage_and_backfill(h)
    finally:
        h.clock.now = clock


async def _outage_and_backfill(h: Harness) -> None:
    p = h.processor
    city = SyntheticCity("BF", CITY_DAY + timedelta(days=1), scenarios=["r1_pos"], healthy=0)
    e = city.enterprises[0]
    await h.publish(city.registry_changes(), h.settings.alarm_registry_topic)  # type: ignore[arg-type]
    await h.wait_for(lambda: p.models.get(e.id) is not None)
    by_minute: dict[float, list[PointReading]] = defaultdict(list)
    for r in city.readings():
        by_minute[r.data_time.timestamp()].append(r)
    times = sorted(by_minute)
    held: list[PointReading] = []
    step = 10
    for i in range(0, 330, step):  # to 22:30, ten minutes a batch, 30 s after the data
        batch = [r for t in times[i : i + step] for r in by_minute[t]]
        if 100 <= i < 280:  # 18:40–21:40: the link is down, the loggers keep their data
            held.extend(batch)
            batch = []
        elif held:
            batch, held = held + batch, []
        await _send(h, batch, times[min(i + step, len(times)) - 1] + 30)
        if i == 270:
            await p.relay.drain()
            r = await h.client.get(
                "/alarms",
                params={"enterprise_id": e.id, "rule": "OFFLINE"},
                headers=h.headers(Role.CITY_SUPERVISOR),
            )
            during = r.json()["items"]
            assert len(during) == 2 and {a["status"] for a in during} == {"open"}, during
    await p.relay.drain()
    r = await h.client.get(
        "/alarms", params={"enterprise_id": e.id}, headers=h.headers(Role.CITY_SUPERVISOR)
    )
    alarms = {a["id"]: a for a in r.json()["items"]}
    offline = [a for a in alarms.values() if a["rule_code"] == "OFFLINE"]
    assert {a["status"] for a in offline} == {"retracted"} and len(offline) == 2
    assert all(
        "撤回" in a["retraction"]["reason"] and a["status_name"] == "已撤回" for a in offline
    )
    (r1,) = [a for a in alarms.values() if a["rule_code"] == "R1"]
    assert r1["late"] is True and r1["status"] == "open" and r1["recovered_at"] is not None
    assert r1["first_at"].startswith("2026-11-21T11:00"), r1["first_at"]
    assert r1["discovered_at"] > "2026-11-21T13:40", "found when the back-fill came"
    detail = (
        await h.client.get(f"/alarms/{offline[0]['id']}", headers=h.headers(Role.CITY_SUPERVISOR))
    ).json()
    assert [j["action"] for j in detail["journal"]][-1] == "retracted"
    # the raw frames of its device, over its evidence window (even retracted: the evidence)
    (link,) = detail["frames"]
    assert link["mn"] == detail["subject_id"] and detail["subject_kind"] == "device"
    at = datetime.fromisoformat
    end = at(detail["recovered_at"] or detail["last_at"])
    assert (at(link["from"]), at(link["to"])) == (
        at(detail["first_at"]) - timedelta(minutes=30),
        end,
    )
    assert link["url"].startswith(f"/api/ingest-hj212/archive/frames?mn={link['mn']}&")

    r = await h.client.get(
        "/alarms",
        params={"enterprise_id": e.id, "retracted": "false"},
        headers=h.headers(Role.CITY_SUPERVISOR),
    )
    assert {a["rule_code"] for a in r.json()["items"]} == {"R1"}

    def published(change: str) -> set[str]:
        return {
            w["body"]["data"]["alarm_id"]
            for w in h.webhook
            if w["body"]["data"]["change"] == change and w["body"]["data"]["enterprise_id"] == e.id
        }

    await h.wait_for(lambda: {a["id"] for a in offline} <= published("retracted"))
    await h.wait_for(lambda: r1["id"] in published("opened"))
    late = [
        w["body"]["data"]
        for w in h.webhook
        if w["body"]["data"]["alarm_id"] == r1["id"] and w["body"]["data"]["change"] == "opened"
    ]
    assert late and late[0]["late"] is True
    name = f"合成企业{e.id[-6:]}"
    texts = [text for _, text in h.sms.sent if name in text]
    assert sum("历史报警" in t for t in texts) == 1, "one text for the late findings"
    assert sum("已撤回" in t for t in texts) == 2, "the OFFLINE texts are withdrawn by text"

    r = await h.client.get(
        "/states/history",
        params={"subject_id": f"{e.id}-C"},
        headers=h.headers(Role.CITY_SUPERVISOR),
    )
    states = [s["state"] for s in r.json()["items"]]
    assert "offline" not in states[:-1], states  # (the data stop at the end: offline then)
    r = await h.client.get(
        "/states/history",
        params={"subject_id": f"{e.id}-C", "withdrawn": "true"},
        headers=h.headers(Role.CITY_SUPERVISOR),
    )
    assert any(s["withdrawn_at"] for s in r.json()["items"] if s["state"] == "offline")
