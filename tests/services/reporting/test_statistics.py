"""Every statistic against a hand-computed small city (see city.py for the archive).

Day D (today − 2) and the day before (P), points report at HH:30 local, expected once an
hour (24 samples a day):

| point | D: samples (valid) × energy | P: samples × energy |
|-------|-----------------------------|---------------------|
| T1    | 24 (24) × 10 kWh = 240      | 24 × 5 = 120        |
| P1    | 12 (12) × 8 = 96            | —                   |
| C1    | 6 (3) × 2 = 12              | —                   |
| T2    | — (offline)                 | —                   |
| P2    | 24 (24) × 5 = 120           | 24 × 5 = 120        |
| P3    | 24 (24) × 4 = 96            | 24 × 2 = 48         |
| C3    | 24 (24) × 1 = 24            | —                   |

Online rate D: 6 of 7 point-days; enterprises 3 of 3. Completeness D: (24+12+3+0+24+24+24) ÷
(7 × 24) = 111 ÷ 168. Energy D: E1 240 (its total line), E2 120 (total line silent: its
sub-meters), E3 120 (no total line) = 480; P: 120 + 120 + 48 = 288, change +66.7 %.
Production D: 96 + 120 + 96 = 312; control 12 + 24 = 36.

Alarms raised on D (local): A1 E1 R1 level 2 (feedback after 3 h, closed after 24 h), A2 E1 R1
level 1 (feedback after 49 h), A3 E1 R3 level 3, A4 E2 R5 suppressed, A5 E3 R1 level 1
(feedback after 1 h, closed after 9 h); on P: B1 E1 R1, B2 E3 R2.
Findings: F1 E1 negative_energy opened D (open); F2 E2 device_offline opened P, resolved D;
F3 E3 constant_power opened and resolved D; F4 E3 negative_energy opened P (open).
Compliance on D: E3 two compliant hours and one non-compliant, E1 one unknown.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from city import CITY_DISTRICTS, SmallCity, local, today
from conftest import Harness
from ecowatt_kernel.identity import Role

DAY_SAMPLES = {
    "T1": (24, 24, 10.0),
    "P1": (12, 12, 8.0),
    "C1": (6, 3, 2.0),
    "P2": (24, 24, 5.0),
    "P3": (24, 24, 4.0),
    "C3": (24, 24, 1.0),
}
PREVIOUS_SAMPLES = {"T1": (24, 24, 5.0), "P2": (24, 24, 5.0), "P3": (24, 24, 2.0)}


@pytest.fixture(scope="module")
async def small_city_day(harness: Harness, city: SmallCity) -> dict:
    h = harness
    d = today() - timedelta(days=2)
    p = d - timedelta(days=1)
    readings = []
    for day, plan in ((d, DAY_SAMPLES), (p, PREVIOUS_SAMPLES)):
        for point, (samples, valid, energy) in plan.items():
            for hour in range(samples):
                readings.append(
                    city.reading(
                        point, local(day, hour, 30), power=energy, energy=energy, valid=hour < valid
                    )
                )
    await h.publish(readings, h.settings.reporting_points_topic)
    hours = timedelta(hours=1)
    alarms = [
        city.alarm("A1", "E1", "R1", local(d, 9)),
        city.alarm("A1", "E1", "R1", local(d, 9), level=2, change="escalated",
                   changed_at=local(d, 10)),
        city.alarm("A1", "E1", "R1", local(d, 9), level=2, status="replied", change="updated",
                   changed_at=local(d, 9) + 3 * hours),
        city.alarm("A1", "E1", "R1", local(d, 9), level=2, status="closed", change="closed",
                   changed_at=local(d, 9) + 24 * hours),
        city.alarm("A2", "E1", "R1", local(d, 14)),
        city.alarm("A2", "E1", "R1", local(d, 14), status="replied", change="updated",
                   changed_at=local(d, 14) + 49 * hours),
        city.alarm("A3", "E1", "R3", local(d, 16), level=3),
        city.alarm("A4", "E2", "R5", local(d, 10), suppressed=True, change="suppressed"),
        city.alarm("A5", "E3", "R1", local(d, 11)),
        city.alarm("A5", "E3", "R1", local(d, 11), status="replied", change="updated",
                   changed_at=local(d, 12)),
        city.alarm("A5", "E3", "R1", local(d, 11), status="closed", change="closed",
                   changed_at=local(d, 20)),
        city.alarm("B1", "E1", "R1", local(p, 9)),
        city.alarm("B2", "E3", "R2", local(p, 9)),
    ]  # fmt: skip
    # Out of order: the closing changes first, the openings last.
    await h.publish(alarms[::-1], h.settings.reporting_alarms_topic)
    findings = [
        city.finding("F1", "E1", "negative_energy", local(d, 2), "open", local(d, 2)),
        city.finding("F2", "E2", "device_offline", local(p, 5), "open", local(p, 5)),
        city.finding("F2", "E2", "device_offline", local(p, 5), "resolved", local(d, 6)),
        city.finding("F3", "E3", "constant_power", local(d, 8), "resolved", local(d, 9)),
        city.finding("F4", "E3", "negative_energy", local(p, 8), "open", local(p, 8)),
    ]
    await h.publish(findings, h.settings.reporting_findings_topic)
    verdicts = [
        city.verdict("E3", local(d, 8), "compliant"),
        city.verdict("E3", local(d, 9), "compliant"),
        city.verdict("E3", local(d, 10), "non_compliant"),
        city.verdict("E1", local(d, 8), "unknown"),
    ]
    await h.publish(verdicts, h.settings.reporting_compliance_topic)
    ids = [city.e(p) for p in ("T1", "P1", "C1", "P2", "P3", "C3")]
    await h.wait_rows(  # only these two days: other modules write other days of the points
        "SELECT count(*) FROM point_sample WHERE point_id = ANY(CAST(:ids AS text[])) "
        "AND data_time >= :s AND data_time < :e",
        len(readings),
        ids=ids,
        s=local(p),
        e=local(d + timedelta(days=1)),
    )
    await h.wait_rows(
        "SELECT count(*) FROM alarm_record WHERE alarm_id LIKE :t AND closed_at IS NOT NULL",
        2,
        t=f"%-{city.tag}",
    )
    await h.wait_rows(
        "SELECT count(*) FROM alarm_record WHERE alarm_id LIKE :t AND feedback_at IS NOT NULL",
        3,
        t=f"%-{city.tag}",
    )
    await h.wait_rows(
        "SELECT count(*) FROM finding_record WHERE finding_id LIKE :t AND status = 'resolved'",
        2,
        t=f"%-{city.tag}",
    )
    await h.wait_rows(
        "SELECT count(*) FROM compliance_hour WHERE task_id = :t", 4, t=f"T-{city.tag}"
    )
    return {"day": d}


async def _stats(h: Harness, **params: object) -> dict:
    query = {"period": "day", "district": CITY_DISTRICTS, **params}
    r = await h.client.get("/statistics", params=query, headers=h.headers(Role.CITY_SUPERVISOR))
    assert r.status_code == 200, r.text
    return r.json()


async def test_online_rate_and_completeness(harness: Harness, small_city_day: dict) -> None:
    s = await _stats(harness, day=small_city_day["day"].isoformat())
    assert s["enterprises"] == 3 and s["points"] == 7
    a = s["availability"]
    assert (a["point_days"], a["online_point_days"]) == (7, 6)
    assert a["online_rate"] == round(6 / 7, 4)
    assert (a["enterprise_days"], a["online_enterprise_days"]) == (3, 3)
    assert a["enterprise_online_rate"] == 1.0
    assert (a["valid_samples"], a["expected_samples"]) == (111, 168)
    assert a["completeness"] == round(111 / 168, 4)
    by_district = {x["key"]: x for x in s["availability_by_district"]}
    assert by_district["610113"]["online_rate"] == round(4 / 5, 4)
    assert by_district["610113"]["completeness"] == round((24 + 12 + 3 + 24) / 120, 4)
    assert by_district["610116"]["online_rate"] == 1.0


async def test_electricity_by_district_and_industry(harness: Harness, small_city_day: dict) -> None:
    s = await _stats(harness, day=small_city_day["day"].isoformat())
    total = s["energy_total"]
    assert (total["energy_kwh"], total["previous_kwh"]) == (480.0, 288.0)
    assert total["change_pct"] == round((480 - 288) / 288 * 100, 1)
    assert (total["production_kwh"], total["control_kwh"]) == (312.0, 36.0)
    district = {e["key"]: e for e in s["energy_by_district"]}
    assert (district["610113"]["energy_kwh"], district["610113"]["previous_kwh"]) == (360.0, 240.0)
    assert district["610113"]["change_pct"] == 50.0
    assert (district["610116"]["energy_kwh"], district["610116"]["change_pct"]) == (120.0, 150.0)
    industry = {e["key"]: e for e in s["energy_by_industry"]}
    assert industry["3360"]["energy_kwh"] == 360.0 and industry["2614"]["energy_kwh"] == 120.0
    enterprises = {e["name"]: e for e in s["by_enterprise"]}
    assert enterprises["乙电镀有限公司"]["energy_kwh"] == 120.0  # silent total line: sub-meters


async def test_alarms_with_period_on_period_change(harness: Harness, small_city_day: dict) -> None:
    s = await _stats(harness, day=small_city_day["day"].isoformat())
    assert s["alarms_total"] == {
        "key": "all", "name": "合计", "count": 4, "previous": 2, "change_pct": 100.0,
    }  # fmt: skip
    assert s["alarms_suppressed"] == 1
    by_rule = {c["key"]: (c["count"], c["previous"], c["change_pct"]) for c in s["alarms_by_rule"]}
    assert by_rule == {"R1": (3, 1, 200.0), "R3": (1, 0, None), "R2": (0, 1, -100.0)}
    assert s["alarms_by_rule"][0]["name"] == "产污运行治污未运行"
    by_district = {c["key"]: (c["count"], c["previous"]) for c in s["alarms_by_district"]}
    assert by_district == {"610113": (3, 1), "610116": (1, 1)}
    by_industry = {c["key"]: (c["count"], c["previous"]) for c in s["alarms_by_industry"]}
    assert by_industry == {"3360": (3, 1), "2614": (1, 1)}
    by_level = {c["name"]: (c["count"], c["previous"]) for c in s["alarms_by_level"]}
    assert by_level == {"一般": (2, 2), "较重": (1, 0), "严重": (1, 0)}
    daily = s["daily"]
    assert len(daily) == 1 and daily[0]["alarms"] == 4 and daily[0]["energy_kwh"] == 480.0


async def test_timeliness_and_repeat_offenders(harness: Harness, small_city_day: dict) -> None:
    s = await _stats(harness, day=small_city_day["day"].isoformat())
    t = s["timeliness"]
    assert (t["alarms"], t["with_feedback"], t["feedback_within_deadline"]) == (4, 3, 2)
    assert t["mean_feedback_h"] == round((3 + 49 + 1) / 3, 2)
    assert (t["closed"], t["closed_within_deadline"], t["still_open"]) == (2, 2, 2)
    assert t["mean_close_h"] == 16.5
    assert (t["feedback_rate"], t["on_time_feedback_rate"], t["close_rate"]) == (0.75, 0.5, 0.5)
    offenders = s["repeat_offenders"]
    assert [o["enterprise_name"] for o in offenders] == ["甲涂装有限公司"]
    assert offenders[0]["alarms"] == 3 and offenders[0]["max_level"] == 3
    assert offenders[0]["rules"] == {"产污运行治污未运行": 2, "治污提前关闭": 1}


async def test_findings_by_kind_and_compliance(harness: Harness, small_city_day: dict) -> None:
    s = await _stats(harness, day=small_city_day["day"].isoformat())
    findings = {
        f["rule_code"]: (f["opened"], f["previous"], f["open_at_end"])
        for f in s["findings_by_kind"]
    }
    assert findings == {
        "negative_energy": (1, 1, 2),
        "constant_power": (1, 0, 0),
        "device_offline": (0, 1, 0),
    }
    assert s["findings_by_kind"][0]["name"] in ("电量为负", "功率为恒定值")
    compliance = {c["verdict"]: (c["hours"], c["enterprises"]) for c in s["compliance"]}
    assert compliance == {"compliant": (2, 1), "non_compliant": (1, 1), "unknown": (1, 1)}


async def test_filters_and_scope(harness: Harness, small_city_day: dict, city: SmallCity) -> None:
    h, day = harness, small_city_day["day"].isoformat()
    graded = await _stats(h, day=day, grade="A")
    assert graded["enterprises"] == 1 and graded["energy_total"]["energy_kwh"] == 120.0
    assert graded["alarms_total"]["count"] == 1
    industry = await _stats(h, day=day, industry="33")
    assert industry["enterprises"] == 2 and industry["energy_total"]["energy_kwh"] == 360.0
    zone = await _stats(h, day=day, zone="曲江")
    assert zone["enterprises"] == 1 and zone["alarms_total"]["count"] == 3
    # A district officer of 雁塔区 asking for 长安区 gets nothing, whatever the query says.
    r = await h.client.get(
        "/statistics",
        params={"period": "day", "day": day, "district": ["610116"]},
        headers=h.headers(Role.DISTRICT_OFFICER, districts=["610113"]),
    )
    assert r.status_code == 200 and r.json()["enterprises"] == 0
    r = await h.client.get(
        "/statistics",
        params={"period": "day", "day": day},
        headers=h.headers(Role.DISTRICT_OFFICER, districts=["610113"]),
    )
    own = r.json()
    assert own["enterprises"] == 2 and own["energy_total"]["energy_kwh"] == 360.0
    r = await h.client.get(
        "/statistics",
        params={"period": "day", "day": day},
        headers=h.headers(Role.ENTERPRISE_USER, enterprises=[city.e("E3")]),
    )
    assert r.json()["enterprises"] == 1 and r.json()["alarms_total"]["count"] == 1
    r = await h.client.get("/statistics", params={"period": "day"}, headers=h.headers(Role.PARTNER))
    assert r.status_code == 403
    r = await h.client.get(
        "/statistics",
        params={"period": "day", "day": day, "district": CITY_DISTRICTS, "format": "xlsx"},
        headers=h.headers(Role.CITY_SUPERVISOR),
    )
    assert r.status_code == 200 and r.content[:2] == b"PK"
    r = await h.client.get(
        "/statistics", params={"period": "custom", "start": day}, headers=h.headers(Role.ADMIN)
    )
    assert r.status_code == 422
