"""Recording the analytics topics: states and alarms as intervals, findings, compliance.

One subscription (group `<prefix>.events`) reads `facility.states`, `alarms`,
`quality.findings` and `control.compliance`. A batch is folded per natural key in Python (a
batch may carry several changes of one alarm) and written in one transaction; the offsets
are committed after it. Every write is idempotent and order-independent:

- a state change is the row (subject, since); after a batch, `ended_at` of the subject's
  rows from the one before the earliest change onwards is recomputed as the next row's
  start, so a late event slots into the timeline where it belongs;
- an alarm keeps the newest change's status, level and times (by `changed_at`), the highest
  level it reached, and the earliest time of each handling step (dispatched, feedback,
  verified, closed) — the basis of the timeliness statistics;
- a finding keeps its newest status; a compliance verdict the newest one produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ecowatt_kernel.bus import Record
from ecowatt_kernel.contracts import (
    AlarmChanged,
    ComplianceVerdict,
    FacilityStateChanged,
    QualityFindingChanged,
    decode,
)
from ecowatt_kernel.db import Database
from sqlalchemy import case, func, literal_column, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_reporting.database import CURRENT_TXID_SQL
from ecowatt_reporting.events.models import (
    ALARM_RECORD,
    COMPLIANCE_HOUR,
    FINDING_RECORD,
    STATE_INTERVAL,
)

__all__ = ["EventRecorder", "alarm_row"]

STEP_COLUMNS = {
    "dispatched": "dispatched_at",
    "replied": "feedback_at",
    "verified": "verified_at",
    "closed": "closed_at",
}
"""Alarm statuses whose first time is kept (handling timeliness)."""

_ENDS_SQL = """
WITH affected AS (
    SELECT * FROM unnest(CAST(:kinds AS text[]), CAST(:ids AS text[]),
                         CAST(:since AS timestamptz[])) AS a(kind, id, since)
),
low AS (
    SELECT a.kind, a.id,
           coalesce((SELECT max(s.started_at) FROM state_interval s
                      WHERE s.subject_kind = a.kind AND s.subject_id = a.id
                        AND s.started_at < a.since), a.since) AS low
      FROM affected a
),
ordered AS (
    SELECT s.subject_kind, s.subject_id, s.started_at,
           lead(s.started_at) OVER (PARTITION BY s.subject_kind, s.subject_id
                                    ORDER BY s.started_at) AS next_start
      FROM state_interval s
      JOIN low ON s.subject_kind = low.kind AND s.subject_id = low.id
                AND s.started_at >= low.low
)
UPDATE state_interval s SET ended_at = o.next_start, updated_at = now()
  FROM ordered o
 WHERE s.subject_kind = o.subject_kind AND s.subject_id = o.subject_id
   AND s.started_at = o.started_at AND s.ended_at IS DISTINCT FROM o.next_start
"""


def alarm_row(event: AlarmChanged) -> dict[str, Any]:
    """The alarm_record row one alarm change describes."""
    suppressed = (
        event.status == "suppressed" or event.change == "suppressed" or bool(event.suppressed_by)
    )
    row: dict[str, Any] = {
        "alarm_id": event.alarm_id,
        "enterprise_id": event.enterprise_id,
        "district_code": event.district_code,
        "rule_code": event.rule_code,
        "rule_name": event.rule_name,
        "rule_version": event.rule_version,
        "subject_kind": event.subject_kind,
        "subject_id": event.subject_id,
        "group_id": event.group_id,
        "level": event.level,
        "max_level": event.level,
        "status": event.status,
        "active": event.active,
        "suppressed": suppressed,
        "first_at": event.first_at or event.opened_at,
        "opened_at": event.opened_at,
        "last_at": event.last_at,
        "recovered_at": event.recovered_at,
        "changed_at": event.changed_at,
        "explanation": event.explanation,
    }
    for column in STEP_COLUMNS.values():
        row[column] = None
    step = STEP_COLUMNS.get(event.status)
    if step is not None:
        row[step] = event.changed_at
    return row


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _fold_alarm(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    newer, older = (new, old) if new["changed_at"] >= old["changed_at"] else (old, new)
    out = dict(newer)
    out["max_level"] = max(old["max_level"], new["max_level"])
    out["first_at"] = min(old["first_at"], new["first_at"])
    out["opened_at"] = min(old["opened_at"], new["opened_at"])
    for column in STEP_COLUMNS.values():
        out[column] = _earliest(older[column], newer[column])
    return out


class EventRecorder:
    """Bus handler for the four analytics topics reporting keeps."""

    def __init__(self, *, database: Database) -> None:
        self.database = database

    async def handle(self, records: Sequence[Record]) -> None:
        states: dict[tuple[str, str, datetime], dict[str, Any]] = {}
        alarms: dict[str, dict[str, Any]] = {}
        findings: dict[str, dict[str, Any]] = {}
        verdicts: dict[tuple[str, str, str, datetime], dict[str, Any]] = {}
        for record in records:
            envelope = decode(record)
            event = envelope.data
            if isinstance(event, FacilityStateChanged):
                states[(event.subject_kind, event.subject_id, event.since)] = {
                    "subject_kind": event.subject_kind,
                    "subject_id": event.subject_id,
                    "started_at": event.since,
                    "enterprise_id": event.enterprise_id,
                    "facility_id": event.facility_id,
                    "state": event.state,
                    "reason": event.reason,
                }
            elif isinstance(event, AlarmChanged):
                row = alarm_row(event)
                old = alarms.get(event.alarm_id)
                alarms[event.alarm_id] = row if old is None else _fold_alarm(old, row)
            elif isinstance(event, QualityFindingChanged):
                row = {
                    "finding_id": event.finding_id,
                    "enterprise_id": event.enterprise_id,
                    "rule_code": event.rule_code,
                    "rule_version": event.rule_version,
                    "status": event.status,
                    "subject_kind": event.subject_kind,
                    "subject_id": event.subject_id,
                    "opened_at": event.opened_at,
                    "resolved_at": event.changed_at if event.status == "resolved" else None,
                    "changed_at": event.changed_at,
                    "om_company": event.om_company,
                }
                old = findings.get(event.finding_id)
                if old is None or row["changed_at"] >= old["changed_at"]:
                    if old is not None:
                        row["opened_at"] = min(row["opened_at"], old["opened_at"])
                    findings[event.finding_id] = row
            elif isinstance(event, ComplianceVerdict):
                key = (event.enterprise_id, event.task_id, event.target_id, event.hour_start)
                row = {
                    "enterprise_id": event.enterprise_id,
                    "task_id": event.task_id,
                    "target_id": event.target_id,
                    "hour_start": event.hour_start,
                    "verdict": event.verdict,
                    "evidence": event.evidence,
                    "produced_at": envelope.produced_at,
                }
                old = verdicts.get(key)
                if old is None or row["produced_at"] >= old["produced_at"]:
                    verdicts[key] = row
        if not (states or alarms or findings or verdicts):
            return
        async with self.database.transaction() as session:
            for writer, rows in (
                (_write_states, list(states.values())),
                (_write_alarms, list(alarms.values())),
                (_write_findings, list(findings.values())),
                (_write_verdicts, list(verdicts.values())),
            ):
                # A statement takes at most 32,767 parameters: 1,000 rows of ≤ 25 columns.
                for start in range(0, len(rows), 1000):
                    await writer(session, rows[start : start + 1000])


async def _write_states(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    statement = insert(STATE_INTERVAL).values(rows)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["subject_kind", "subject_id", "started_at"],
            set_={
                "state": statement.excluded.state,
                "reason": statement.excluded.reason,
                "facility_id": statement.excluded.facility_id,
                "updated_at": func.now(),
            },
        )
    )
    earliest: dict[tuple[str, str], datetime] = {}
    for row in rows:
        key = (row["subject_kind"], row["subject_id"])
        earliest[key] = min(earliest.get(key, row["started_at"]), row["started_at"])
    keys = sorted(earliest)
    await session.execute(
        text(_ENDS_SQL),
        {
            "kinds": [k[0] for k in keys],
            "ids": [k[1] for k in keys],
            "since": [earliest[k] for k in keys],
        },
    )


async def _write_alarms(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    t = ALARM_RECORD
    statement = insert(t).values(rows)
    x = statement.excluded
    newer = x.changed_at >= t.c.changed_at
    current = (
        "enterprise_id",
        "district_code",
        "rule_code",
        "rule_name",
        "rule_version",
        "subject_kind",
        "subject_id",
        "group_id",
        "level",
        "status",
        "active",
        "suppressed",
        "last_at",
        "recovered_at",
        "changed_at",
        "explanation",
    )
    updates: dict[str, Any] = {name: case((newer, x[name]), else_=t.c[name]) for name in current}
    updates["max_level"] = func.greatest(t.c.max_level, x.max_level)
    updates["first_at"] = func.least(t.c.first_at, x.first_at)
    updates["opened_at"] = func.least(t.c.opened_at, x.opened_at)
    for column in STEP_COLUMNS.values():
        updates[column] = func.least(t.c[column], x[column])
    updates["updated_at"] = func.now()
    updates["txid"] = literal_column(CURRENT_TXID_SQL)
    await session.execute(
        statement.on_conflict_do_update(index_elements=["alarm_id"], set_=updates)
    )


async def _write_findings(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    t = FINDING_RECORD
    statement = insert(t).values(rows)
    x = statement.excluded
    newer = x.changed_at >= t.c.changed_at
    updates: dict[str, Any] = {
        name: case((newer, x[name]), else_=t.c[name])
        for name in ("status", "resolved_at", "changed_at", "rule_version", "om_company")
    }
    updates["opened_at"] = func.least(t.c.opened_at, x.opened_at)
    updates["updated_at"] = func.now()
    await session.execute(
        statement.on_conflict_do_update(index_elements=["finding_id"], set_=updates)
    )


async def _write_verdicts(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    t = COMPLIANCE_HOUR
    statement = insert(t).values(rows)
    x = statement.excluded
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["enterprise_id", "task_id", "target_id", "hour_start"],
            set_={
                "verdict": x.verdict,
                "evidence": x.evidence,
                "produced_at": x.produced_at,
                "updated_at": func.now(),
                "txid": literal_column(CURRENT_TXID_SQL),
            },
            where=x.produced_at >= t.c.produced_at,
        )
    )
