"""The finding store under concurrency: checks that open the same finding at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from ecowatt_validation import rules as R
from ecowatt_validation.findings import Hit
from harness import DAY, Harness


async def test_two_writers_opening_the_same_finding_at_once(harness: Harness) -> None:
    """The archive check and a catch-up day close both found an empty credit code on a fresh
    archive; the second insert broke the (rule, subject) key and the day close failed."""
    hit = Hit(R.CREDIT_CODE_EMPTY, "enterprise", "E1", "E1", DAY, {"credit_code": None})
    now = datetime.now(UTC)
    started = asyncio.Event()

    async def writer(first: bool) -> int:
        async with harness.database.transaction() as session:
            if not first:
                await started.wait()
            events = await harness.findings.record(session, [hit], now)
            if first:
                started.set()
                await asyncio.sleep(0.3)  # still uncommitted when the other one writes
            return len(events)

    opened = await asyncio.gather(writer(True), writer(False))
    assert sorted(opened) == [0, 1], "one opens it, the other sees it"
    assert len(await harness.findings_of(R.CREDIT_CODE_EMPTY)) == 1
