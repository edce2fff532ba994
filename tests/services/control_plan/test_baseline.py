"""Baselines on the real database: holidays, control days and incomplete days are left out,
an incomplete hour does not count, the latest normal days are used, and the documented
fallbacks (learned running power, rated power, none) apply when history is short."""

from __future__ import annotations

import statistics
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from ecowatt_control_plan.compliance import baseline
from ecowatt_control_plan.compliance.service import control_days
from ecowatt_kernel.contracts import RegistryChange
from ecowatt_kernel.identity import Role

from .city import reading
from .conftest import Harness, headers

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Asia/Shanghai")
X = date(2026, 10, 20)
DISTRICT = "610199"
HOLIDAY, CONTROL, INCOMPLETE, WEAK_HOUR = (X - timedelta(days=n) for n in (2, 3, 4, 5))


def _level(day: date) -> float:
    """A distinct load per day, so that the median shows which days were used."""
    return 10.0 * (X - day).days + 5.0


def _changes() -> list[RegistryChange]:
    now = datetime(2026, 10, 1, tzinfo=UTC)
    out = [
        RegistryChange(
            entity="enterprise",
            entity_id="CPT-B01",
            operation="upsert",
            revision=1,
            changed_at=now,
            snapshot={
                "id": "CPT-B01",
                "updated_at": now.isoformat(),
                "name": "基线测试",
                "district_code": DISTRICT,
            },
        )
    ]
    for n, rated in ((1, 100.0), (2, 100.0), (3, 100.0), (4, None)):
        pid = f"CPT-B01-P{n}"
        out.append(
            RegistryChange(
                entity="point",
                entity_id=pid,
                operation="upsert",
                revision=1,
                changed_at=now,
                snapshot={
                    "id": pid,
                    "updated_at": now.isoformat(),
                    "enterprise_id": "CPT-B01",
                    "point_type": "production",
                    "name": pid,
                    "rated_kw": rated,
                    "start_stop_kw": 20.0,
                    "expected_interval_s": 300,
                },
            )
        )
    return out


def _day(point_id: str, day: date, power: Any, keep: Any = lambda t: True) -> list[Any]:
    start = datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC)
    return [
        reading("CPT-B01", point_id, t, power(t))
        for t in (start + timedelta(minutes=5 * i) for i in range(288))
        if keep(t)
    ]


async def test_exclusions_and_fallbacks(harness: Harness) -> None:
    h = harness
    await h.publish(_changes(), h.settings.control_plan_registry_topic)
    await h.wait_for(lambda: h.runtime.view.point("CPT-B01-P4") is not None)
    readings = []
    for n in range(1, 11):
        day = X - timedelta(days=n)
        level = 500.0 if day == HOLIDAY else 400.0 if day == CONTROL else _level(day)

        def keep(t: datetime, day: date = day) -> bool:
            local = t.astimezone(TZ)
            if day == INCOMPLETE:
                return local.minute % 10 == 0  # half of the samples: below 90 %
            if day == WEAK_HOUR and local.hour == 10:
                return local.minute < 30  # this hour is half complete, the day is not
            return True

        readings += _day("CPT-B01-P1", day, lambda t, v=level: v, keep)
    # P2: a single day, running 08:00-18:00 at 80 kW.
    readings += _day(
        "CPT-B01-P2",
        X - timedelta(days=1),
        lambda t: 80.0 if 8 <= t.astimezone(TZ).hour < 18 else 1.0,
    )
    await h.record(readings)
    r = await h.client.put(
        f"/holidays/{HOLIDAY.isoformat()}",
        json={"name": "测试假日"},
        headers=headers(Role.CITY_SUPERVISOR),
    )
    assert r.status_code == 200, r.text
    order = {
        "id": "BASE-ORDER",
        "state": "approved",
        "effective_at": datetime(CONTROL.year, CONTROL.month, CONTROL.day, 9, tzinfo=TZ),
        "expected_end": datetime(CONTROL.year, CONTROL.month, CONTROL.day, 20, tzinfo=TZ),
        "lifted_at": None,
        "list_version": 1,
        "segments": [
            {
                "from": datetime(
                    CONTROL.year, CONTROL.month, CONTROL.day, 9, tzinfo=TZ
                ).isoformat(),
                "level": "orange",
                "districts": [DISTRICT],
            }
        ],
    }
    controls = control_days([order], {DISTRICT, "610113"}, TZ)
    assert controls == {DISTRICT: {CONTROL}}

    points = [
        baseline.PointInfo(f"CPT-B01-P{n}", DISTRICT, rated)
        for n, rated in ((1, 100.0), (2, 100.0), (3, 100.0), (4, None))
    ]
    async with h.runtime.database.transaction() as session:
        profiles = await baseline.compute(
            session,
            points=points,
            day=X,
            tz=TZ,
            control_days=controls,
            days=14,
            window_days=42,
            min_days=3,
        )
        latest = await baseline.compute(
            session,
            points=points[:1],
            day=X,
            tz=TZ,
            control_days=controls,
            days=3,
            window_days=42,
            min_days=3,
        )
    normal = [X - timedelta(days=n) for n in (1, 5, 6, 7, 8, 9, 10)]
    p1 = profiles["CPT-B01-P1"]
    assert (p1.source, p1.days) == ("history", len(normal))
    assert p1.at(10) == pytest.approx(
        statistics.median(_level(d) for d in normal if d != WEAK_HOUR)
    ), "hour 10 of the weak-hour day is left out; the day itself counts"
    assert p1.at(3) == pytest.approx(statistics.median(_level(d) for d in normal))
    assert p1.peak_kwh == max(v for v in p1.hours if v is not None)
    # Only the three latest normal days: X-1, X-5 (its hour 10 excluded), X-6.
    assert latest["CPT-B01-P1"].at(3) == pytest.approx(statistics.median([15.0, 55.0, 65.0]))
    assert latest["CPT-B01-P1"].at(10) == pytest.approx(statistics.median([15.0, 65.0]))

    p2, p3, p4 = (profiles[f"CPT-B01-P{n}"] for n in (2, 3, 4))
    assert p2.source == "learned" and p2.at(10) == pytest.approx(80.0) and p2.at(3) == 0.0
    assert p2.peak_kwh == pytest.approx(80.0)
    assert p3.source == "rated" and p3.at(3) == pytest.approx(70.0)
    assert p4.source == "none" and p4.peak_kwh is None and p4.at(10) is None

    # Profiles are kept per day once computed (a verdict's evidence never shifts).
    async with h.runtime.database.transaction() as session:
        kept = await baseline.profiles(
            session,
            points=points[:1],
            day=X,
            tz=TZ,
            control_days={},
            days=14,
            window_days=42,
            min_days=3,
        )
        again = await baseline.profiles(
            session,
            points=points[:1],
            day=X,
            tz=TZ,
            control_days=controls,
            days=14,
            window_days=42,
            min_days=3,
        )
    assert kept["CPT-B01-P1"].at(3) != p1.at(3), "without the control day excluded"
    assert again["CPT-B01-P1"] == kept["CPT-B01-P1"]
