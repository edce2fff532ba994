"""Recording `telemetry.points` into per-point hours (the consumer `control-plan.points`).

Only valid real-time and minute readings with an unflagged `active_power_kw` count; the
first value of each minute is kept, so a redelivered batch changes nothing (at least once is
harmless). One transaction per partition batch: the touched hours are locked, merged and
written back, and the offsets are committed only after that.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ecowatt_kernel.bus import Record
from ecowatt_kernel.contracts import ContractError, PointReading, decode
from ecowatt_kernel.db import Database
from sqlalchemy import func, text, update
from sqlalchemy.dialects.postgresql import insert

from ecowatt_control_plan.archive import ArchiveIndex, expected_slots, step_min
from ecowatt_control_plan.telemetry.models import POINT_HOUR_SEQ, point_hour

_logger = logging.getLogger(__name__)
MINUTES = 60
_SAMPLE_INTERVALS = ("realtime", "minute")
_LOCK_HOURS = text(
    """
SELECT ph.point_id, ph.hour_start, ph.powers
FROM control_plan.point_hour ph
JOIN unnest(CAST(:points AS text[]), CAST(:hours AS timestamptz[])) AS k(point_id, hour_start)
  ON ph.point_id = k.point_id AND ph.hour_start = k.hour_start
ORDER BY ph.point_id, ph.hour_start
FOR UPDATE OF ph
"""
)


def hour_of(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def summary(powers: Sequence[float | None], *, step: int, threshold: float) -> dict[str, Any]:
    """Counts and sums of one hour's minute values."""
    present = [(m, p) for m, p in enumerate(powers) if p is not None]
    return {
        "samples": len(present),
        "slots": len({m // step for m, _ in present}),
        "power_sum": float(sum(p for _, p in present)),
        # Each sample stands for its expected interval (`step` minutes).
        "run_minutes": min(MINUTES, step * sum(1 for _, p in present if p >= threshold)),
    }


class Recorder:
    """Turns point readings into minute values per point and hour."""

    def __init__(self, *, database: Database, index: ArchiveIndex, retention_days: int) -> None:
        self.database = database
        self.index = index
        self.retention_days = retention_days
        self.applied = 0
        self.skipped = 0

    async def handle(self, records: Sequence[Record]) -> None:
        """One partition's batch: merge its readings into their hours, in one transaction."""
        incoming: dict[tuple[str, datetime], dict[int, float]] = defaultdict(dict)
        enterprises: dict[str, str] = {}
        usable = skipped = 0
        for record in records:
            try:
                reading = decode(record).data
            except ContractError as exc:
                _logger.warning("telemetry.points: skipping a record: %s", exc)
                skipped += 1
                continue
            if not isinstance(reading, PointReading) or not self.usable(reading):
                skipped += 1
                continue
            at = reading.data_time.astimezone(UTC)
            minutes = incoming[(reading.point_id, hour_of(at))]
            minutes.setdefault(at.minute, float(reading.values["active_power_kw"]))
            enterprises[reading.point_id] = reading.enterprise_id
            usable += 1
        if incoming:
            await self.merge(incoming, enterprises)
        # Counted once durable (tests and metrics wait on these).
        self.applied += usable
        self.skipped += skipped

    @staticmethod
    def usable(reading: PointReading) -> bool:
        return (
            reading.valid
            and reading.interval in _SAMPLE_INTERVALS
            and "active_power_kw" in reading.values
            and not reading.quality.get("active_power_kw")
        )

    async def merge(
        self,
        incoming: dict[tuple[str, datetime], dict[int, float]],
        enterprises: dict[str, str],
    ) -> None:
        """Lock the hours, add the minutes they do not have yet, write them back."""
        keys = sorted(incoming)
        async with self.database.transaction() as session:
            stored: dict[tuple[str, datetime], list[float | None]] = {}
            rows = await session.execute(
                _LOCK_HOURS,
                {"points": [k[0] for k in keys], "hours": [k[1] for k in keys]},
            )
            for point_id, hour, powers in rows.all():
                stored[(point_id, hour)] = list(powers) if powers else [None] * MINUTES
            writes: list[dict[str, Any]] = []
            for key in keys:
                point_id, hour = key
                powers = stored.get(key) or [None] * MINUTES
                changed = False
                for minute, power in incoming[key].items():
                    if powers[minute] is None:
                        powers[minute] = power
                        changed = True
                if not changed and key in stored:
                    continue
                found = self.index.point(point_id)
                if found is not None:
                    archive, snap = found
                    step, expected = step_min(snap), expected_slots(snap)
                    threshold = archive.run_threshold_kw(snap)
                else:
                    step, expected, threshold = 1, MINUTES, float("inf")
                writes.append(
                    {
                        "point_id": point_id,
                        "hour_start": hour,
                        "enterprise_id": enterprises.get(point_id, ""),
                        "powers": powers,
                        "expected": expected,
                        **summary(powers, step=step, threshold=threshold),
                    }
                )
            if writes:
                statement = insert(point_hour)
                statement = statement.on_conflict_do_update(
                    index_elements=["point_id", "hour_start"],
                    set_={
                        name: statement.excluded[name]
                        for name in (
                            "powers",
                            "samples",
                            "slots",
                            "expected",
                            "power_sum",
                            "run_minutes",
                        )
                    }
                    | {"updated_at": func.now(), "seq": POINT_HOUR_SEQ.next_value()},
                )
                await session.execute(statement, writes)

    async def purge(self, *, now: datetime, hour_retention_days: int) -> tuple[int, int]:
        """Drop minute values past their retention, and hours past theirs."""
        async with self.database.transaction() as session:
            dropped = await session.execute(
                update(point_hour)
                .where(
                    point_hour.c.hour_start < now - timedelta(days=self.retention_days),
                    point_hour.c.powers.is_not(None),
                )
                .values(powers=None)
            )
            deleted = await session.execute(
                point_hour.delete().where(
                    point_hour.c.hour_start < now - timedelta(days=hour_retention_days)
                )
            )
        return int(getattr(dropped, "rowcount", 0) or 0), int(getattr(deleted, "rowcount", 0) or 0)
