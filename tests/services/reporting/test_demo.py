"""Development-only demo history: the day's shape it promises, and a backfill that writes
yesterday once through the normal history writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from city import CHANGED, TZ, SmallCity, today
from ecowatt_kernel.contracts import PointSnapshot
from ecowatt_kernel.db import Database, scratch_database
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_reporting.history.demo import (
    _DayShape,
    backfill_demo_history,
    demo_history_used,
)
from ecowatt_reporting.history.service import HistoryWriter
from ecowatt_reporting.service import SERVICE
from sqlalchemy import text


def _point(n: int, point_type: str) -> PointSnapshot:
    return PointSnapshot(
        id=f"DP{n}", updated_at=CHANGED, enterprise_id=f"DE{n}", facility_id=f"DF{n}",
        point_type=point_type, name=f"DP{n}", rated_kw=100.0,
    )  # fmt: skip


def test_a_demo_day_works_by_day_idles_by_night_and_varies_between_points() -> None:
    day = today() - timedelta(days=1)
    shapes = [_DayShape.of(_point(n, "production"), day) for n in range(400)]
    working = [s for s in shapes if s.working and not s.offline]
    # about 10 % idle enterprise days and 2 % offline point days, drawn per point and day
    assert 300 < len(working) < 390
    assert any(s.offline for s in shapes) and any(not s.working for s in shapes)
    for shape in working:
        assert 63.0 <= shape.power(14 * 60) <= 76.0  # 0.7 × rated ± 8 % noise
        assert shape.power(3 * 60) <= 2.2  # 0.02 × rated by night
        assert 8 * 60 <= shape.start < 9 * 60
    offline = next(s for s in shapes if s.offline)
    assert offline.power(12 * 60) is None and offline.power(9 * 60) is not None
    # drawn once per point and day: the same day gives the same shape, another day another
    assert _DayShape.of(_point(7, "production"), day) == shapes[7]
    before = day - timedelta(days=1)
    assert [_DayShape.of(_point(n, "production"), before) for n in range(400)] != shapes


def test_a_switched_off_control_facility_runs_at_idle_in_the_afternoon() -> None:
    day = today() - timedelta(days=1)
    shapes = [_DayShape.of(_point(n, "control"), day) for n in range(400)]
    off = [s for s in shapes if s.switched_off and s.working and not s.offline]
    on = [s for s in shapes if not s.switched_off and s.working and not s.offline]
    assert off and on
    for shape in off:
        assert shape.power(15 * 60) <= 1.1  # 0.01 × rated while switched off
        assert shape.power(10 * 60) >= 55.0  # 0.6 × rated in the morning
    for shape in on:
        assert shape.power(15 * 60) >= 55.0


async def test_backfill_writes_yesterday_once_through_the_history_writer(
    database_url: str,
) -> None:
    async with scratch_database(database_url) as url:
        database = Database(url, schema="reporting", pool_size=2)
        try:
            assert SERVICE.migrations is not None
            await database.migrate(SERVICE.migrations)
            city = SmallCity()
            view = RegistryView()
            view.apply_all(city.registry_changes())
            writer = HistoryWriter(
                database=database, timezone="Asia/Shanghai", raw_retention_days=400,
                future_tolerance_h=26,
            )  # fmt: skip
            assert not await demo_history_used(database)
            written = await backfill_demo_history(
                database=database, view=view, writer=writer, days=1, timezone="Asia/Shanghai"
            )
            yesterday = today() - timedelta(days=1)
            offline = sum(_DayShape.of(p, yesterday).offline for p in city.points)
            # a minute sample of every active point, but 4 h of each offline point-day
            assert written == 1440 * len(city.points) - 240 * offline
            async with database.session() as session:
                days = (
                    (await session.execute(text("SELECT DISTINCT day FROM rollup_1d ORDER BY day")))
                    .scalars()
                    .all()
                )
                first, last = (
                    await session.execute(
                        text("SELECT min(data_time), max(data_time) FROM point_sample")
                    )
                ).one()
            assert days == [yesterday]
            midnight = datetime(yesterday.year, yesterday.month, yesterday.day, tzinfo=TZ)
            assert first == midnight.astimezone(UTC)
            assert last == (midnight + timedelta(minutes=1439)).astimezone(UTC)
            assert await demo_history_used(database)
            # a second start finds the day and writes nothing
            assert (
                await backfill_demo_history(
                    database=database, view=view, writer=writer, days=1, timezone="Asia/Shanghai"
                )
                == 0
            )
        finally:
            await database.dispose()
