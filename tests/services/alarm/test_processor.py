"""`AlarmProcessor.refresh_shared`: with several workers, only worker 0 serves the API and one
process learns at night; every other worker must pick up what they wrote in PostgreSQL — an
approved filing, learned values, an edited rule — at its next refresh, and only then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ecowatt_alarm import tables as T
from sqlalchemy import insert, update

from .conftest import Harness

pytestmark = pytest.mark.integration


async def test_refresh_reloads_what_another_process_wrote(harness: Harness) -> None:
    p = harness.processor
    await p.refresh_shared()  # whatever other tests changed through this process's API
    assert not await p.refresh_shared(), "nothing changed: nothing to reload"

    now = datetime.now(UTC)
    async with p.db.transaction() as session:  # as worker 0's API and learning would
        await session.execute(
            insert(T.filing).values(
                id="refresh-filing",
                enterprise_id="REFRESH-E",
                reason="检修",
                starts_at=now,
                ends_at=now + timedelta(hours=2),
                status="approved",
                filed_by="enterprise-user",
                decided_by="district-officer",
                decided_at=now,
            )
        )
        await session.execute(
            insert(T.learned).values(
                kind="point",
                subject_id="REFRESH-P",
                rated_kw=42.0,
                running_median=30.0,
                samples=1000,
                days=10,
                computed_at=now,
            )
        )
    assert "REFRESH-E" not in p.suppressions.filings
    assert await p.refresh_shared()
    assert set(p.suppressions.filings["REFRESH-E"]) == {"refresh-filing"}
    assert p.learning.point("REFRESH-P").rated_kw == 42.0

    generation = p.rules.generation
    async with p.db.transaction() as session:  # a rule saved again (same parameters)
        await session.execute(
            update(T.rule).where(T.rule.c.code == "R1").values(updated_at=datetime.now(UTC))
        )
    assert await p.refresh_shared()
    assert p.rules.generation == generation + 1
    assert not await p.refresh_shared()
