"""Findings: one per (rule, subject), with a lifecycle and a row per day it occurred.

    open ──(new day, still failing)──▶ updated ──(a clean check)──▶ resolved ──(fails again)──▶
    reopened

Every transition is written with its `QualityFindingChanged` event into the outbox in the
same transaction, so `quality.findings` says exactly what the database holds. Status changes
happen only for the newest day a finding has seen: re-running an older day rewrites that
day's occurrence and evidence, never today's status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ecowatt_kernel.contracts import QualityFindingChanged, encode
from ecowatt_kernel.ids import new_id
from ecowatt_kernel.outbox import enqueue
from sqlalchemy import select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_validation.models import FINDING_DAYS, FINDINGS, OUTBOX
from ecowatt_validation.rules import RULES_BY_CODE, RuleState

_CHUNK = 5000
_WRITERS_LOCK = 0x5EC0_F1D1  # the transaction-level advisory lock of every findings writer


@dataclass
class Hit:
    """A rule failed for a subject on a day."""

    rule_code: str
    subject_kind: str
    subject_id: str
    enterprise_id: str
    day: date
    evidence: dict[str, Any] = field(default_factory=dict)
    subject_name: str | None = None
    severity: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule_code, self.subject_id)


@dataclass(frozen=True)
class EnterpriseInfo:
    name: str | None = None
    district_code: str | None = None
    zone: str | None = None
    industry_code: str | None = None
    om_company: str | None = None


EnterpriseLookup = Callable[[str], EnterpriseInfo]


def _findings_upsert() -> Any:
    stmt = insert(FINDINGS)
    columns = {c.name: stmt.excluded[c.name] for c in FINDINGS.c if c.name != "id"}
    return stmt.on_conflict_do_update(index_elements=["id"], set_=columns)


def _days_upsert(*, accumulate: bool) -> Any:
    stmt = insert(FINDING_DAYS)
    return stmt.on_conflict_do_update(
        index_elements=["finding_id", "day"],
        set_={
            "count": (FINDING_DAYS.c.count + 1) if accumulate else 1,
            "evidence": stmt.excluded.evidence,
            "rule_version": stmt.excluded.rule_version,
        },
    )


# One-row upserts executed with a list of rows (executemany): compiled once, rows sent in a
# pipeline. The multi-row VALUES form compiled a bind parameter per value on every call,
# which cost more than the database did (30,000 findings: ~5 s of the day close).
_FINDINGS_UPSERT = _findings_upsert()
_DAYS_ACCUMULATE = _days_upsert(accumulate=True)
_DAYS_REPLACE = _days_upsert(accumulate=False)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class FindingStore:
    """Applies hits and resolutions to the findings tables and the outbox."""

    def __init__(
        self,
        *,
        rules: Callable[[str], RuleState],
        enterprise: EnterpriseLookup,
        topic: str = "quality.findings",
    ) -> None:
        self.rules = rules
        self.enterprise = enterprise
        self.topic = topic

    async def _lock(
        self, session: AsyncSession, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Any]:
        # Writers of findings (binder batches with hits, archive check, sweep, day close) are
        # serialised: row locks cannot guard a finding that does not exist yet, and two of
        # them opening the same (rule, subject) at once would break its unique key.
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITERS_LOCK})
        found: dict[tuple[str, str], Any] = {}
        for chunk in _chunks(sorted(set(keys))):
            rows = await session.execute(
                select(FINDINGS)
                .where(tuple_(FINDINGS.c.rule_code, FINDINGS.c.subject_id).in_(list(chunk)))
                .order_by(FINDINGS.c.rule_code, FINDINGS.c.subject_id)
                .with_for_update()
            )
            for row in rows:
                found[(row.rule_code, row.subject_id)] = row
        return found

    async def record(
        self,
        session: AsyncSession,
        hits: Sequence[Hit],
        now: datetime,
        *,
        accumulate: bool = False,
    ) -> list[QualityFindingChanged]:
        """Open, update or reopen the findings of `hits`; write their day rows and events.

        `accumulate` (streaming hits) adds to the day's count; otherwise (daily checks, which
        see the whole day) the day's row is replaced, so re-running a day is idempotent.
        """
        if not hits:
            return []
        merged: dict[tuple[str, str], Hit] = {}
        for hit in hits:  # the newest day per key decides the status
            current = merged.get(hit.key)
            if current is None or hit.day >= current.day:
                merged[hit.key] = hit
        existing = await self._lock(session, list(merged))
        events: list[QualityFindingChanged] = []
        upserts: list[dict[str, Any]] = []
        day_rows: list[dict[str, Any]] = []
        for key, hit in merged.items():
            state = self.rules(hit.rule_code)
            rule = RULES_BY_CODE[hit.rule_code]
            info = self.enterprise(hit.enterprise_id)
            row = existing.get(key)
            severity = hit.severity or rule.severity
            base = {
                "rule_version": state.version,
                "severity": severity,
                "subject_kind": hit.subject_kind,
                "subject_name": hit.subject_name,
                "enterprise_id": hit.enterprise_id,
                "enterprise_name": info.name,
                "district_code": info.district_code,
                "zone": info.zone,
                "industry_code": info.industry_code,
                "om_company": info.om_company,
            }
            change: str | None
            if row is None:
                finding_id = new_id()
                change = "open"
                values = {
                    **base,
                    "id": finding_id,
                    "rule_code": hit.rule_code,
                    "subject_id": hit.subject_id,
                    "status": "open",
                    "last_change": "open",
                    "first_opened_at": now,
                    "opened_at": now,
                    "changed_at": now,
                    "last_seen_at": now,
                    "resolved_at": None,
                    "last_day": hit.day,
                    "occurrences": 1,
                    "reopen_count": 0,
                    "evidence": hit.evidence,
                }
            else:
                finding_id = row.id
                values = {**row._asdict(), "last_seen_at": max(now, row.last_seen_at)}
                if hit.day < row.last_day:
                    change = None  # an older day re-run: only its day row changes
                elif row.status == "resolved":
                    change = "reopened"
                    values.update(
                        base,
                        status="open",
                        last_change="reopened",
                        opened_at=now,
                        changed_at=now,
                        resolved_at=None,
                        last_day=hit.day,
                        occurrences=row.occurrences + 1,
                        reopen_count=row.reopen_count + 1,
                        evidence=hit.evidence,
                    )
                elif hit.day > row.last_day or severity != row.severity:
                    change = "updated"
                    values.update(
                        base,
                        last_change="updated",
                        changed_at=now,
                        last_day=hit.day,
                        occurrences=row.occurrences + (1 if hit.day > row.last_day else 0),
                        evidence=hit.evidence,
                    )
                else:
                    change = None
                    if not accumulate:
                        values["evidence"] = hit.evidence
            upserts.append(values)
            day_rows.append(
                {
                    "finding_id": finding_id,
                    "day": hit.day,
                    "rule_code": hit.rule_code,
                    "subject_id": hit.subject_id,
                    "enterprise_id": hit.enterprise_id,
                    "rule_version": state.version,
                    "count": 1,
                    "first_at": now,
                    "evidence": hit.evidence,
                }
            )
            if change is not None:
                events.append(self._event(values, change, now))
        if upserts:
            await session.execute(_FINDINGS_UPSERT, upserts)
        if day_rows:
            await session.execute(_DAYS_ACCUMULATE if accumulate else _DAYS_REPLACE, day_rows)
        await enqueue(session, OUTBOX, [encode(e, topic=self.topic) for e in events])
        return events

    async def resolve(
        self,
        session: AsyncSession,
        keys: Sequence[tuple[str, str]],
        now: datetime,
        day: date,
        *,
        reason: str,
    ) -> list[QualityFindingChanged]:
        """Resolve the open findings of `keys` whose newest occurrence is not after `day`."""
        if not keys:
            return []
        existing = await self._lock(session, keys)
        events: list[QualityFindingChanged] = []
        updates: list[dict[str, Any]] = []
        for row in existing.values():
            if row.status != "open" or row.last_day > day:
                continue
            values = {
                **row._asdict(),
                "status": "resolved",
                "last_change": "resolved",
                "changed_at": now,
                "resolved_at": now,
                "evidence": {**row.evidence, "resolved_by": reason, "resolved_day": str(day)},
            }
            updates.append(values)
            events.append(self._event(values, "resolved", now))
        if updates:
            await session.execute(_FINDINGS_UPSERT, updates)
        await enqueue(session, OUTBOX, [encode(e, topic=self.topic) for e in events])
        return events

    async def reconcile(
        self,
        session: AsyncSession,
        *,
        rule_codes: Iterable[str],
        hits: Sequence[Hit],
        now: datetime,
        day: date,
        subjects: set[str] | None = None,
        reason: str = "check passed",
    ) -> list[QualityFindingChanged]:
        """Record `hits` of a complete check of `rule_codes`; resolve every other open finding
        of those rules (limited to `subjects` when given)."""
        codes = sorted(set(rule_codes))
        events = await self.record(session, hits, now)
        hit_keys = {h.key for h in hits}
        query = select(FINDINGS.c.rule_code, FINDINGS.c.subject_id).where(
            FINDINGS.c.status == "open", FINDINGS.c.rule_code.in_(codes)
        )
        stale = [
            (r.rule_code, r.subject_id)
            for r in await session.execute(query)
            if (r.rule_code, r.subject_id) not in hit_keys
            and (subjects is None or r.subject_id in subjects)
        ]
        events += await self.resolve(session, stale, now, day, reason=reason)
        return events

    def _event(self, values: dict[str, Any], change: str, now: datetime) -> QualityFindingChanged:
        return QualityFindingChanged(
            finding_id=values["id"],
            enterprise_id=values["enterprise_id"],
            rule_code=values["rule_code"],
            rule_version=values["rule_version"],
            status=change,  # type: ignore[arg-type]
            subject_kind=values["subject_kind"],
            subject_id=values["subject_id"],
            opened_at=values["opened_at"],
            changed_at=now,
            evidence={**values["evidence"], "day": str(values["last_day"])},
            om_company=values["om_company"],
        )
