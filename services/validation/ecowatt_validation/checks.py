"""The checks that are not per reading: archive completeness, the day-close rules, the live
offline sweep. Each computes every hit of its rules, then reconciles: hits open, update or
reopen findings; open findings of the same rules that no longer hit are resolved.

Why one module of ~850 lines: the three checks share the archive snapshot (`Archive`), the
day's aggregates and the reconciliation with the finding store; the daily rules are a list
of small functions over the same rows. Splitting it by check is the next step when a fourth
kind of check comes.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.contracts.registry import (
    DeviceSnapshot,
    EnterpriseSnapshot,
    FacilitySnapshot,
    PointSnapshot,
)
from ecowatt_kernel.db import Database
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert

from ecowatt_validation import rules as R
from ecowatt_validation.findings import EnterpriseInfo, FindingStore, Hit
from ecowatt_validation.models import DAILY_RUNS, ENTERPRISES, POINT_DAILY
from ecowatt_validation.reference import credit_code_problem, industry_classes

_logger = logging.getLogger(__name__)

ARCHIVE_RULES = (
    R.NO_MONITORING_POINT,
    R.NO_TOTAL_POINT,
    R.PRODUCTION_UNMONITORED,
    R.PRODUCTION_THRESHOLD_MISSING,
    R.CONTROL_UNMONITORED,
    R.CONTROL_THRESHOLD_MISSING,
    R.INDUSTRY_NOT_CLASS,
    R.CREDIT_CODE_EMPTY,
    R.CREDIT_CODE_INVALID,
)
DAILY_POINT_RULES = (
    R.NO_DATA_AFTER_COMMISSIONING,
    R.ENERGY_GT_25X_MAX_LOAD,
    R.ABNORMAL_LARGE_ENERGY,
)
STREAMING_POINT_RULES = (R.NEGATIVE_ENERGY, R.NEGATIVE_POWER, R.CONSTANT_POWER, R.DATA_LATENCY)


ALSO_USED_BY_MAX = 20
"""Enterprises named in a shared credit code's evidence (the count gives the rest)."""


@dataclass(frozen=True)
class Archive:
    """The archive entities a check needs, read once from the registry view."""

    enterprises: dict[str, EnterpriseSnapshot]
    facilities: list[FacilitySnapshot]
    points: list[PointSnapshot]
    devices: dict[str, DeviceSnapshot]

    @classmethod
    def of(cls, view: RegistryView) -> Archive:
        return cls(
            enterprises={
                e.id: e for e in view.all("enterprise") if isinstance(e, EnterpriseSnapshot)
            },
            facilities=[f for f in view.all("facility") if isinstance(f, FacilitySnapshot)],
            points=[p for p in view.all("point") if isinstance(p, PointSnapshot)],
            devices={d.mn: d for d in view.all("device") if isinstance(d, DeviceSnapshot)},
        )


def enterprise_info(view: RegistryView) -> Callable[[str], EnterpriseInfo]:
    def lookup(enterprise_id: str) -> EnterpriseInfo:
        e = view.enterprise(enterprise_id)
        if e is None:
            return EnterpriseInfo()
        return EnterpriseInfo(e.name, e.district_code, e.zone, e.industry_code, e.om_company)

    return lookup


def _has_threshold(point: PointSnapshot, minimum: float) -> bool:
    return point.start_stop_kw is not None and point.start_stop_kw > minimum


def archive_hits(archive: Archive, rules: Callable[[str], R.RuleState], day: date) -> list[Hit]:
    """Every archive-completeness and archive-quality hit (A01–A05, thresholds, codes)."""
    hits: list[Hit] = []
    active_points = [p for p in archive.points if p.status == "active"]
    points_by_ent: dict[str, list[PointSnapshot]] = defaultdict(list)
    points_by_facility: dict[str, list[PointSnapshot]] = defaultdict(list)
    for p in active_points:
        points_by_ent[p.enterprise_id].append(p)
        if p.facility_id:
            points_by_facility[p.facility_id].append(p)
    facilities_by_ent: dict[str, list[FacilitySnapshot]] = defaultdict(list)
    for f in archive.facilities:
        if f.status == "active":
            facilities_by_ent[f.enterprise_id].append(f)
    credit_owners: dict[str, list[str]] = defaultdict(list)
    for e in archive.enterprises.values():
        if e.credit_code and e.credit_code.strip():
            credit_owners[e.credit_code.strip().upper()].append(e.id)
    classes = industry_classes()

    def on(code: str) -> R.RuleState | None:
        state = rules(code)
        return state if state.enabled else None

    for e in archive.enterprises.values():
        points = points_by_ent.get(e.id, [])

        def hit(code: str, evidence: dict[str, Any], ent: EnterpriseSnapshot = e) -> None:
            hits.append(Hit(code, "enterprise", ent.id, ent.id, day, evidence, ent.name))

        if (s := on(R.NO_MONITORING_POINT)) and e.production_status in s["statuses"] and not points:
            hit(R.NO_MONITORING_POINT, {"active_points": 0})
        if (
            (s := on(R.NO_TOTAL_POINT))
            and e.production_status in s["statuses"]
            and not any(p.point_type == "total" for p in points)
        ):
            hit(R.NO_TOTAL_POINT, {"point_types": sorted({p.point_type for p in points})})
        for code, kind, types in (
            (R.PRODUCTION_UNMONITORED, "production", ("production", "combined")),
            (R.CONTROL_UNMONITORED, "control", ("control", "combined")),
        ):
            s = on(code)
            if not s or e.production_status not in s["statuses"]:
                continue
            facilities = [f for f in facilities_by_ent.get(e.id, []) if f.kind == kind]
            if not facilities:
                hit(code, {"problem": f"no_{kind}_facility", "facilities": 0})
                continue
            bare = [
                {"id": f.id, "name": f.name}
                for f in facilities
                if not any(p.point_type in types for p in points_by_facility.get(f.id, []))
            ]
            if bare:
                hit(code, {"problem": "facility_without_point", "facilities": bare})
        industry = (e.industry_code or "").strip()
        if on(R.INDUSTRY_NOT_CLASS) and industry not in classes:
            level = {0: "empty", 1: "section", 2: "division", 3: "group"}.get(
                len(industry), "invalid"
            )
            hit(R.INDUSTRY_NOT_CLASS, {"industry_code": industry or None, "level": level})
        credit = (e.credit_code or "").strip().upper()
        if not credit:
            if on(R.CREDIT_CODE_EMPTY):
                hit(R.CREDIT_CODE_EMPTY, {"credit_code": e.credit_code})
        elif s := on(R.CREDIT_CODE_INVALID):
            problem = credit_code_problem(credit)
            others = [x for x in credit_owners.get(credit, []) if x != e.id]
            if problem is None and s["check_unique"] and others:
                problem = "与其他企业重复 (used by another enterprise)"
            if problem:
                hit(
                    R.CREDIT_CODE_INVALID,
                    {
                        "credit_code": credit,
                        "problem": problem,
                        # a few names show the case; n sharers listing each other grew n²
                        "also_used_by": others[:ALSO_USED_BY_MAX],
                        "also_used_by_count": len(others),
                    },
                )

    for p in active_points:
        if p.enterprise_id not in archive.enterprises:
            continue
        for code, measured in (
            (R.CONTROL_THRESHOLD_MISSING, ("control",)),
            (R.PRODUCTION_THRESHOLD_MISSING, ("production",)),
        ):
            s = on(code)
            wanted = p.point_type in measured or (
                p.point_type == "combined"
                and (p.is_key if code == R.CONTROL_THRESHOLD_MISSING else True)
            )
            if s and wanted and not _has_threshold(p, s["min_threshold_kw"]):
                hits.append(
                    Hit(
                        code,
                        "point",
                        p.id,
                        p.enterprise_id,
                        day,
                        {
                            "start_stop_kw": p.start_stop_kw,
                            "point_type": p.point_type,
                            "rated_kw": p.rated_kw,
                        },
                        p.name,
                    )
                )
    return hits


def longest_gap_slots(bits: int, start: int, end: int) -> tuple[int, int]:
    """The longest run of zero bits in [start, end) of `bits`: (length, first slot)."""
    if end <= start:
        return 0, start
    window = (bits >> start) & ((1 << (end - start)) - 1)
    text_bits = format(window, f"0{end - start}b")[::-1]  # index 0 = slot `start`
    best, best_at, position = 0, start, 0
    for run in text_bits.split("1"):
        if len(run) > best:
            best, best_at = len(run), start + position
        position += len(run) + 1
    return best, best_at


class Checks:
    """Archive checks, day-close rules and the live offline sweep."""

    def __init__(
        self,
        *,
        database: Database,
        view: RegistryView,
        findings: FindingStore,
        rules: Callable[[str], R.RuleState],
        timezone: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_committed: Callable[[], None] | None = None,
        settle_s: float = 0.0,
    ) -> None:
        self.database = database
        self.view = view
        self.findings = findings
        self.rules = rules
        self.tz = ZoneInfo(timezone)
        self.clock = clock
        self.on_committed = on_committed
        self.settle_s = settle_s
        self.changed: dict[str, datetime] = {}
        """When each enterprise's archive last changed (after the view was loaded)."""
        view.on_change(self._archive_changed)

    def _archive_changed(self, entity: str, key: str, old: Any, new: Any) -> None:
        if not self.view.ready:
            return  # the archive as it stands at start-up is settled
        for snap in (old, new):
            enterprise = key if entity == "enterprise" else getattr(snap, "enterprise_id", None)
            if enterprise:
                self.changed[enterprise] = self.clock()

    def settled(self, enterprise_id: str) -> bool:
        """Quiet for `settle_s` since its last change (or declared complete)."""
        changed = self.changed.get(enterprise_id)
        return changed is None or (self.clock() - changed).total_seconds() >= self.settle_s

    def complete(self, enterprise_id: str) -> None:
        """An explicit "archive complete": judge the enterprise's archive now."""
        self.changed.pop(enterprise_id, None)

    def next_settled_at(self) -> datetime | None:
        """When the next enterprise changed meanwhile will have settled."""
        if not self.changed:
            return None
        return min(self.changed.values()) + timedelta(seconds=self.settle_s)

    def today(self) -> date:
        return self.clock().astimezone(self.tz).date()

    def _bounds(self, day: date) -> tuple[datetime, datetime]:
        start = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        return start, start + timedelta(days=1)

    def _wake(self) -> None:
        if self.on_committed is not None:
            self.on_committed()

    # ---------------------------------------------------------------------------- archive

    async def sync_enterprises(self, archive: Archive) -> None:
        """Mirror the enterprises the API filters by (district, zone, industry, O&M)."""
        rows = [
            {
                "id": e.id,
                "name": e.name,
                "district_code": e.district_code,
                "zone": e.zone,
                "industry_code": e.industry_code,
                "om_company": e.om_company,
                "production_status": e.production_status,
                "deleted": False,
            }
            for e in archive.enterprises.values()
        ]
        async with self.database.transaction() as session:
            await session.execute(ENTERPRISES.update().values(deleted=True))
            if rows:
                stmt = insert(ENTERPRISES)
                await session.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["id"],
                        set_={
                            c.name: stmt.excluded[c.name] for c in ENTERPRISES.c if c.name != "id"
                        },
                    ),
                    rows,
                )

    async def check_archive(self, day: date | None = None) -> int:
        """Run the archive rules on the enterprises whose archive has settled (quiet for
        `settle_s`, or declared complete): a half-built archive is not judged, so loading one
        through the API opens and resolves nothing in passing. The number of events."""
        day = day or self.today()
        archive = Archive.of(self.view)
        await self.sync_enterprises(archive)
        for enterprise in [e for e in self.changed if self.settled(e)]:
            del self.changed[enterprise]
        waiting = set(self.changed)
        hits = [h for h in archive_hits(archive, self.rules, day) if h.enterprise_id not in waiting]
        subjects = None
        if waiting:
            subjects = {e for e in archive.enterprises if e not in waiting}
            subjects.update(p.id for p in archive.points if p.enterprise_id not in waiting)
        async with self.database.transaction() as session:
            events = await self.findings.reconcile(
                session,
                rule_codes=ARCHIVE_RULES,
                hits=hits,
                now=self.clock(),
                day=day,
                subjects=subjects,
                reason="archive fixed",
            )
        self._wake()
        return len(events)

    # ----------------------------------------------------------------------- live offline

    def _offline_limit_s(self, point: PointSnapshot) -> float:
        p = self.rules(R.DEVICE_OFFLINE).params
        limit: float = max(
            p["missed_intervals"] * point.expected_interval_s, p["min_offline_min"] * 60.0
        )
        return limit

    def _offline_level(self, hours: float) -> int:
        return sum(1 for bound in self.rules(R.DEVICE_OFFLINE)["escalate_h"] if hours >= bound)

    async def sweep_offline(self) -> int:
        """Open or update device-offline findings from receive times; resolve devices back."""
        if not self.rules(R.DEVICE_OFFLINE).enabled:
            return 0
        now = self.clock()
        day = now.astimezone(self.tz).date()
        async with self.database.session() as session:
            rows = await session.execute(
                text("SELECT point_id, last_received_at FROM validation.point_state")
            )
            last_seen = {r.point_id: r.last_received_at for r in rows}
        by_device: dict[str, list[PointSnapshot]] = defaultdict(list)
        for p in self.view.all("point"):
            if isinstance(p, PointSnapshot) and p.status == "active" and p.device_mn:
                by_device[p.device_mn].append(p)
        hits: list[Hit] = []
        online: list[tuple[str, str]] = []
        for mn, points in by_device.items():
            device = self.view.device(mn)
            if device is None or device.status != "active":
                continue
            silent_since: list[datetime] = []
            for p in points:
                seen = last_seen.get(p.id) or p.commissioned_at
                if seen is None or (now - seen).total_seconds() <= self._offline_limit_s(p):
                    break
                silent_since.append(seen)
            else:
                since = max(silent_since)
                hours = (now - since).total_seconds() / 3600.0
                level = self._offline_level(hours)
                hits.append(
                    Hit(
                        R.DEVICE_OFFLINE,
                        "device",
                        mn,
                        points[0].enterprise_id,
                        day,
                        {
                            "since": since.isoformat(),
                            "hours": round(hours, 2),
                            "level": level,
                            "source": "live",
                        },
                        device.name,
                        severity="major" if level >= 2 else "warning",
                    )
                )
                continue
            online.append((R.DEVICE_OFFLINE, mn))
        async with self.database.transaction() as session:
            events = await self.findings.record(session, hits, now)
            events += await self.findings.resolve(
                session, online, now, day, reason="device back online"
            )
        self._wake()
        return len(events)

    # ----------------------------------------------------------------------------- daily

    async def run_day(self, day: date, *, trigger: str = "schedule") -> dict[str, Any]:
        """Run every day-close rule for `day` (idempotent: re-running rewrites that day)."""
        started = self.clock()
        async with self.database.transaction() as session:
            run_id = await session.scalar(
                DAILY_RUNS.insert()
                .values(day=day, trigger=trigger, started_at=started, status="running")
                .returning(DAILY_RUNS.c.id)
            )
        try:
            stats = await self._run_day(day)
        except Exception as exc:
            async with self.database.transaction() as session:
                await session.execute(
                    DAILY_RUNS.update()
                    .where(DAILY_RUNS.c.id == run_id)
                    .values(status="failed", finished_at=self.clock(), error=repr(exc)[:2000])
                )
            raise
        stats["seconds"] = round((self.clock() - started).total_seconds(), 3)
        async with self.database.transaction() as session:
            await session.execute(
                DAILY_RUNS.update()
                .where(DAILY_RUNS.c.id == run_id)
                .values(status="done", finished_at=self.clock(), stats=stats)
            )
        self._wake()
        return stats

    async def last_completed_day(self) -> date | None:
        async with self.database.session() as session:
            return await session.scalar(
                select(DAILY_RUNS.c.day)
                .where(DAILY_RUNS.c.status == "done", DAILY_RUNS.c.trigger == "schedule")
                .order_by(DAILY_RUNS.c.day.desc())
                .limit(1)
            )

    async def _run_day(self, day: date) -> dict[str, Any]:
        start, end = self._bounds(day)
        archive = Archive.of(self.view)
        await self.sync_enterprises(archive)
        points = [
            p
            for p in archive.points
            if p.status == "active"
            and p.enterprise_id in archive.enterprises
            and (p.commissioned_at is None or p.commissioned_at < end)
        ]
        expected: dict[str, int] = {}
        for p in points:
            begin = max(start, p.commissioned_at) if p.commissioned_at else start
            expected[p.id] = max(
                1, math.ceil((end - begin).total_seconds() / p.expected_interval_s)
            )
        async with self.database.session() as session:
            result = await session.execute(
                text(
                    "SELECT point_id, interval_s, energy_kwh, reported_kwh, deltas, p_max, p_n, samples,"  # noqa: E501
                    " valid_samples, slots, live_slots, hourly_kwh, neg_energy_events, resets,"
                    " rollovers,"
                    " neg_power_samples, neg_power_run_max, const_max_h, latency_grades, latency_max_s"  # noqa: E501
                    " FROM validation.point_daily WHERE day = :day"
                ),
                {"day": day},
            )
            daily = {r.point_id: r for r in result}
            q05 = self.rules(R.ABNORMAL_LARGE_ENERGY).params
            history_rows = await session.execute(
                text(
                    "SELECT point_id, array_agg(CASE WHEN deltas > 0 THEN energy_kwh ELSE reported_kwh END)"  # noqa: E501
                    " AS energies FROM validation.point_daily WHERE day >= :first AND day < :day"
                    " AND completeness >= :valid AND neg_energy_events = 0 GROUP BY point_id"
                ),
                {
                    "first": day - timedelta(days=int(q05["history_days"])),
                    "day": day,
                    "valid": q05["valid_completeness"],
                },
            )
            history = {r.point_id: list(r.energies) for r in history_rows}
        hits: list[Hit] = []
        completeness: dict[str, float] = {}
        rows_out: list[dict[str, Any]] = []
        for p in points:
            row = daily.get(p.id)
            exp = expected[p.id]
            valid = row.valid_samples if row else 0
            completeness[p.id] = min(1.0, valid / exp)
            rows_out.append(
                {
                    "point_id": p.id,
                    "day": day,
                    "enterprise_id": p.enterprise_id,
                    "mn": p.device_mn or "",
                    "interval_s": p.expected_interval_s,
                    "expected_samples": exp,
                    "completeness": completeness[p.id],
                }
            )
            hits.extend(self._point_hits(p, day, start, end, row, history.get(p.id, [])))
        hits.extend(self._enterprise_energy_hits(archive, points, day, daily, completeness))
        offline_hits, devices_checked = self._offline_hits(points, day, start, end, daily, archive)
        hits.extend(offline_hits)
        hits.extend(archive_hits(archive, self.rules, day))
        async with self.database.session() as session:
            unbound = await session.execute(
                text(
                    "SELECT mn, enterprise_id, sum(count) AS n, array_agg(DISTINCT detail) AS circuits"  # noqa: E501
                    " FROM validation.unbound_readings WHERE day = :day AND reason = 'unknown_circuit'"  # noqa: E501
                    " AND enterprise_id IS NOT NULL GROUP BY mn, enterprise_id"
                ),
                {"day": day},
            )
            for r in unbound:
                if self.rules(R.UNBOUND_DATA).enabled:
                    hits.append(
                        Hit(
                            R.UNBOUND_DATA,
                            "device",
                            r.mn,
                            r.enterprise_id,
                            day,
                            {
                                "reason": "unknown_circuit",
                                "circuits": sorted(r.circuits),
                                "values": int(r.n),
                            },
                        )
                    )
        now = self.clock()
        with_data = {
            p.id for p in points if (row := daily.get(p.id)) is not None and row.valid_samples > 0
        }
        point_ids = {p.id for p in points}
        by_rule: dict[str, list[Hit]] = defaultdict(list)
        for h in hits:
            by_rule[h.rule_code].append(h)

        def of(codes: Iterable[str]) -> list[Hit]:
            return [h for c in codes for h in by_rule.get(c, [])]

        async with self.database.transaction() as session:
            if rows_out:
                stmt = insert(POINT_DAILY)
                await session.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["point_id", "day"],
                        set_={
                            "expected_samples": stmt.excluded.expected_samples,
                            "completeness": stmt.excluded.completeness,
                        },
                    ),
                    [
                        {
                            **r,
                            "slots": b"",
                            "valid_slots": b"",
                            "hourly_kwh": [0.0] * 24,
                            "latency_grades": [0] * 5,
                        }
                        for r in rows_out
                    ],
                )
            events = await self.findings.reconcile(
                session, rule_codes=ARCHIVE_RULES, hits=of(ARCHIVE_RULES), now=now, day=day
            )
            events += await self.findings.reconcile(
                session,
                rule_codes=DAILY_POINT_RULES,
                hits=of(DAILY_POINT_RULES),
                now=now,
                day=day,
                subjects=point_ids,
            )
            events += await self.findings.reconcile(
                session,
                rule_codes=STREAMING_POINT_RULES,
                hits=of(STREAMING_POINT_RULES),
                now=now,
                day=day,
                subjects=with_data,
                reason="a day of data without the problem",
            )
            enterprises = set(archive.enterprises)
            events += await self.findings.reconcile(
                session,
                rule_codes=[R.SUB_METERS_EXCEED_TOTAL],
                hits=of([R.SUB_METERS_EXCEED_TOTAL]),
                now=now,
                day=day,
                subjects=enterprises,
            )
            events += await self.findings.reconcile(
                session,
                rule_codes=[R.DEVICE_OFFLINE, R.UNBOUND_DATA],
                hits=of([R.DEVICE_OFFLINE, R.UNBOUND_DATA]),
                now=now,
                day=day,
                subjects=devices_checked,
            )
        counts: dict[str, int] = defaultdict(int)
        for h in hits:
            counts[h.rule_code] += 1
        return {"points": len(points), "hits": dict(counts), "events": len(events)}

    def _point_hits(
        self,
        p: PointSnapshot,
        day: date,
        start: datetime,
        end: datetime,
        row: Any,
        history: list[float],
    ) -> list[Hit]:
        hits: list[Hit] = []

        def hit(code: str, evidence: dict[str, Any], severity: str | None = None) -> None:
            if self.rules(code).enabled:
                hits.append(
                    Hit(code, "point", p.id, p.enterprise_id, day, evidence, p.name, severity)
                )

        q02 = self.rules(R.NO_DATA_AFTER_COMMISSIONING).params
        if (
            p.commissioned_at is not None
            and p.commissioned_at <= end - timedelta(hours=q02["grace_h"])
            and (row is None or row.valid_samples == 0)
        ):
            hours = (end - p.commissioned_at).total_seconds() / 3600.0
            hit(
                R.NO_DATA_AFTER_COMMISSIONING,
                {
                    "commissioned_at": p.commissioned_at.isoformat(),
                    "days_since_commissioning": int(hours // 24),
                    "window": [max(start, p.commissioned_at).isoformat(), end.isoformat()],
                    "samples": row.samples if row else 0,
                },
                "major" if hours >= q02["escalate_h"] else "warning",
            )
        if row is None:
            return hits
        energy = row.energy_kwh if row.deltas > 0 else row.reported_kwh
        window = {"window": [start.isoformat(), end.isoformat()]}
        if row.neg_energy_events > 0:
            hit(
                R.NEGATIVE_ENERGY,
                {
                    **window,
                    "events": row.neg_energy_events,
                    "resets": row.resets,
                    "rollovers": row.rollovers,
                },
            )
        q04 = self.rules(R.ENERGY_GT_25X_MAX_LOAD).params
        p_max = row.p_max if row.p_max is not None and row.p_max > 0 else None
        basis = "p_max_day"
        if p_max is None:
            p_max, basis = (
                (p.max_load_kw, "max_load_kw") if p.max_load_kw else (p.rated_kw, "rated_kw")
            )
        if p_max is not None and p_max > 0 and energy > q04["factor"] * p_max:
            hit(
                R.ENERGY_GT_25X_MAX_LOAD,
                {
                    **window,
                    "energy_kwh": round(energy, 3),
                    "p_max_kw": p_max,
                    "basis": basis,
                    "limit_kwh": round(q04["factor"] * p_max, 3),
                },
            )
        elif (p_max is None or p_max <= 0) and energy > q04["energy_without_power_kwh"]:
            hit(
                R.ENERGY_GT_25X_MAX_LOAD,
                {
                    **window,
                    "energy_kwh": round(energy, 3),
                    "p_max_kw": 0.0,
                    "basis": "energy_without_power",
                },
            )
        q05 = self.rules(R.ABNORMAL_LARGE_ENERGY).params
        reasons: dict[str, Any] = {}
        if len(history) >= q05["min_history_days"]:
            median = statistics.median(history)
            mean = statistics.fmean(history)
            sigma = statistics.pstdev(history)
            if energy > q05["median_factor"] * median and energy > mean + q05["sigma"] * sigma:
                reasons["history"] = {
                    "median_kwh": round(median, 3),
                    "mean_kwh": round(mean, 3),
                    "sigma_kwh": round(sigma, 3),
                    "days": len(history),
                }
        if p.rated_kw:
            limit = q05["hourly_rated_factor"] * p.rated_kw
            peaks = {h: round(v, 3) for h, v in enumerate(row.hourly_kwh) if v > limit}
            if peaks:
                reasons["hourly"] = {"limit_kwh": round(limit, 3), "hours": peaks}
        if reasons:
            hit(R.ABNORMAL_LARGE_ENERGY, {**window, "energy_kwh": round(energy, 3), **reasons})
        q07 = self.rules(R.NEGATIVE_POWER).params
        if row.neg_power_run_max >= q07["consecutive"] or (
            row.samples and row.neg_power_samples / row.samples > q07["day_fraction"]
        ):
            hit(
                R.NEGATIVE_POWER,
                {
                    **window,
                    "negative_samples": row.neg_power_samples,
                    "samples": row.samples,
                    "longest_run": row.neg_power_run_max,
                },
            )
        if row.const_max_h >= self.rules(R.CONSTANT_POWER)["window_h"]:
            hit(R.CONSTANT_POWER, {**window, "longest_constant_h": round(row.const_max_h, 2)})
        min_grade = self.rules(R.DATA_LATENCY)["finding_min_grade"]
        late = sum(row.latency_grades[min_grade - 1 :])
        if late:
            hit(
                R.DATA_LATENCY,
                {
                    **window,
                    "grades": list(row.latency_grades),
                    "late_samples": late,
                    "max_latency_s": round(row.latency_max_s, 1),
                },
            )
        return hits

    def _enterprise_energy_hits(
        self,
        archive: Archive,
        points: list[PointSnapshot],
        day: date,
        daily: dict[str, Any],
        completeness: dict[str, float],
    ) -> list[Hit]:
        s = self.rules(R.SUB_METERS_EXCEED_TOTAL)
        if not s.enabled:
            return []
        by_ent: dict[str, list[PointSnapshot]] = defaultdict(list)
        for p in points:
            by_ent[p.enterprise_id].append(p)
        hits: list[Hit] = []
        for ent_id, pts in by_ent.items():
            totals = [p for p in pts if p.point_type == "total"]
            subs = [p for p in pts if p.point_type in s["sub_types"]]
            if not totals or not subs:
                continue
            if any(completeness.get(p.id, 0.0) < s["min_completeness"] for p in totals + subs):
                continue

            def energy(p: PointSnapshot) -> float:
                row = daily.get(p.id)
                if row is None:
                    return 0.0
                return float(row.energy_kwh if row.deltas > 0 else row.reported_kwh)

            total = sum(energy(p) for p in totals)
            sub = sum(energy(p) for p in subs)
            limit = s["factor"] * total + s["slack_kwh"]
            if sub > limit:
                e = archive.enterprises[ent_id]
                hits.append(
                    Hit(
                        R.SUB_METERS_EXCEED_TOTAL,
                        "enterprise",
                        ent_id,
                        ent_id,
                        day,
                        {
                            "sub_kwh": round(sub, 3),
                            "total_kwh": round(total, 3),
                            "limit_kwh": round(limit, 3),
                            "sub_points": {p.id: round(energy(p), 3) for p in subs},
                            "total_points": {p.id: round(energy(p), 3) for p in totals},
                        },
                        e.name,
                    )
                )
        return hits

    def _offline_hits(
        self,
        points: list[PointSnapshot],
        day: date,
        start: datetime,
        end: datetime,
        daily: dict[str, Any],
        archive: Archive,
    ) -> tuple[list[Hit], set[str]]:
        if not self.rules(R.DEVICE_OFFLINE).enabled:
            return [], set()
        by_device: dict[str, list[PointSnapshot]] = defaultdict(list)
        for p in points:
            if p.device_mn:
                by_device[p.device_mn].append(p)
        hits: list[Hit] = []
        checked: set[str] = set()
        for mn, pts in by_device.items():
            device = archive.devices.get(mn)
            if device is None or device.status != "active":
                continue
            interval = max(p.expected_interval_s for p in pts)
            first = min(max(start, p.commissioned_at) if p.commissioned_at else start for p in pts)
            n_slots = 86400 // interval
            combined = 0
            for p in pts:
                row = daily.get(p.id)
                # live samples only: back-filled (history) data complete the day, but the
                # device was silent when they were due (NULL: a row from before live slots)
                if row is None:
                    continue
                live = row.slots if row.live_slots is None else row.live_slots
                if not live:
                    continue
                bits = int.from_bytes(live, "little")
                if p.expected_interval_s == interval:
                    combined |= bits
                else:
                    ratio = p.expected_interval_s / interval
                    for slot in range(len(live) * 8):
                        if bits >> slot & 1:
                            combined |= 1 << int(slot * ratio)
            first_slot = int((first - start).total_seconds()) // interval
            checked.add(mn)
            gap, at = longest_gap_slots(combined, first_slot, n_slots)
            silence_s = (gap + 1) * interval if gap else 0
            limit = max(self._offline_limit_s(p) for p in pts)
            if gap and silence_s > limit:
                hours = gap * interval / 3600.0
                level = self._offline_level(hours)
                since = start + timedelta(seconds=at * interval)
                hits.append(
                    Hit(
                        R.DEVICE_OFFLINE,
                        "device",
                        mn,
                        pts[0].enterprise_id,
                        day,
                        {
                            "source": "daily",
                            "from": since.isoformat(),
                            "to": (since + timedelta(seconds=gap * interval)).isoformat(),
                            "hours": round(hours, 2),
                            "level": level,
                            "limit_s": limit,
                        },
                        device.name,
                        "major" if level >= 2 else "warning",
                    )
                )
        return hits, checked
