"""The compliance pass: judge every enterprise with a task, hour by hour.

Run by a periodic job (one replica leads), and on demand (`POST /compliance/run`). Each run:

1. finds the (enterprise, hour) pairs to judge — hours of tasks in force during the last
   seven days that have no final judgement yet, the hour in progress (provisional: shown in
   the API, never published), and final hours of the last `rejudge_hours` whose readings or
   task changed since they were judged (backfilled data can turn 无法判定 into a verdict);
2. loads those hours' minute values and the points' baselines for the day;
3. judges every measure in force (`rules.py`) and the enterprise's status of the hour;
4. writes verdicts and statuses, publishes final ones whose verdict changed on
   `control.compliance` (outbox), and opens or extends supervision issues (`store.py`).

An hour is final `grace_min` after it ends.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.db import Database
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan.alerts.models import alert_order
from ecowatt_control_plan.archive import ArchiveIndex, EnterpriseArchive, step_min
from ecowatt_control_plan.compliance import baseline, rules, store
from ecowatt_control_plan.compliance.models import PassResult, enterprise_hour
from ecowatt_control_plan.measures.models import measure
from ecowatt_control_plan.settings import ControlPlanSettings
from ecowatt_control_plan.tasks import service as tasks
from ecowatt_control_plan.telemetry.models import point_hour

_logger = logging.getLogger(__name__)
HOUR = timedelta(hours=1)
LOOKBACK = timedelta(days=7)
_PASS_LOCK = int.from_bytes(hashlib.sha256(b"control_plan.pass").digest()[:8], "big", signed=True)


def floor_hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def minutes_between(hour: datetime, start: datetime, end: datetime | None) -> list[int]:
    """Minutes of `hour` inside [start, end)."""
    lo = max(0.0, (start - hour).total_seconds() / 60)
    hi = 60.0 if end is None else min(60.0, (end - hour).total_seconds() / 60)
    first = int(-(-lo // 1))
    return list(range(first, int(hi))) if hi > first else []


def window_minutes(windows: Sequence[dict[str, str]], hour: datetime, tz: ZoneInfo) -> set[int]:
    """Minutes of `hour` inside a measure's local off-peak windows."""
    local = hour.astimezone(tz)
    out: set[int] = set()
    for m in range(60):
        minute_of_day = local.hour * 60 + m + local.minute
        for w in windows:
            start = int(w["start"][:2]) * 60 + int(w["start"][3:])
            end = int(w["end"][:2]) * 60 + int(w["end"][3:])
            inside = (
                start <= minute_of_day < end
                if start < end
                else (minute_of_day >= start or minute_of_day < end)
            )
            if inside:
                out.add(m)
                break
    return out


def control_days(orders: Sequence[Any], districts: set[str], tz: ZoneInfo) -> dict[str, set[date]]:
    """Local days on which an approved order covered each district (left out of baselines)."""
    out: dict[str, set[date]] = defaultdict(set)
    for row in orders:
        for span in tasks.spans_of(row):
            covered = [d for d in districts if tasks.covers(span.districts, d)]
            if not covered:
                continue
            day = span.start.astimezone(tz).date()
            last = (span.end or datetime.now(UTC) + timedelta(days=1)).astimezone(tz)
            last_day = (last - timedelta(microseconds=1)).date()
            while day <= last_day:
                for district in covered:
                    out[district].add(day)
                day += timedelta(days=1)
    return out


@dataclass
class _Work:
    enterprise_id: str
    hour: datetime
    final: bool
    tasks: list[dict[str, Any]]


class ComplianceJudge:
    """Judges enterprises with tasks, hour by hour (see the module docstring)."""

    def __init__(
        self,
        *,
        database: Database,
        index: ArchiveIndex,
        settings: ControlPlanSettings,
        clock: Any,
    ) -> None:
        self.database = database
        self.index = index
        self.settings = settings
        self.clock = clock
        self.tz = ZoneInfo(settings.timezone)
        self.runs = 0
        self.last: PassResult | None = None
        self._profiles: dict[date, dict[str, baseline.Profile]] = {}
        """Profiles read or computed per day (frozen once computed, so safe to keep)."""

    async def run(self, *, now: datetime | None = None) -> PassResult:
        """One pass at `now` (default: the service clock)."""
        started = time.perf_counter()
        now = now or self.clock()
        result = PassResult(
            hours=0,
            enterprises=0,
            verdicts=0,
            published=0,
            issues_opened=0,
            issues_updated=0,
            seconds=0.0,
        )
        async with self.database.transaction() as session:
            # One pass at a time across replicas and on-demand runs.
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PASS_LOCK})
            work = await self._work(session, now)
            by_hour: dict[datetime, list[_Work]] = defaultdict(list)
            for w in work:
                by_hour[w.hour].append(w)
            orders = [
                dict(r)
                for r in (
                    await session.execute(
                        select(alert_order).where(alert_order.c.state == "approved")
                    )
                ).mappings()
            ]
            enterprises: set[str] = set()
            for hour in sorted(by_hour):
                await self._judge_hour(session, hour, by_hour[hour], orders, now, result)
                enterprises.update(w.enterprise_id for w in by_hour[hour])
            result.hours = len(by_hour)
            result.enterprises = len(enterprises)
        result.seconds = round(time.perf_counter() - started, 3)
        self.runs += 1
        self.last = result
        return result

    async def prepare_baselines(self, *, day: date) -> int:
        """Compute the day's baselines of every point of the listed enterprises (the nightly
        job does this after midnight, so that passes during an alert only read them)."""
        async with self.database.session() as session:
            enterprise_ids = sorted(
                (
                    await session.scalars(
                        select(measure.c.enterprise_id)
                        .distinct()
                        .where(measure.c.version_to.is_(None))
                    )
                ).all()
            )
            orders = [
                dict(r)
                for r in (
                    await session.execute(
                        select(alert_order).where(alert_order.c.state == "approved")
                    )
                ).mappings()
            ]
        infos = []
        for enterprise_id in enterprise_ids:
            archive = self.index.enterprise(enterprise_id)
            snap = self.index.view.enterprise(enterprise_id)
            district = snap.district_code if snap else ""
            infos += [
                baseline.PointInfo(p.id, district, archive.rated_kw(p))
                for p in archive.points.values()
            ]
        districts = {i.district_code for i in infos}
        done = 0
        for first in range(0, len(infos), 5000):
            async with self.database.transaction() as session:
                found = await baseline.profiles(
                    session,
                    points=infos[first : first + 5000],
                    day=day,
                    tz=self.tz,
                    control_days=control_days(orders, districts, self.tz),
                    days=self.settings.control_plan_baseline_days,
                    window_days=self.settings.control_plan_baseline_window_days,
                    min_days=self.settings.control_plan_baseline_min_days,
                )
            self._profiles.setdefault(day, {}).update(found)
            done += len(found)
        return done

    # ------------------------------------------------------------------ what to judge

    async def _work(self, session: AsyncSession, now: datetime) -> list[_Work]:
        lo = floor_hour(now - LOOKBACK)
        active = await tasks.active_tasks(session, start=lo, end=now)
        by_enterprise = tasks.by_enterprise(active)
        if not by_enterprise:
            return []
        candidates: dict[tuple[str, datetime], list[dict[str, Any]]] = defaultdict(list)
        for enterprise_id, their_tasks in by_enterprise.items():
            for row in their_tasks:
                start = floor_hour(max(row["valid_from"], lo))
                end = min(row["valid_to"] or now, now)
                hour = start
                while hour < end:
                    candidates[(enterprise_id, hour)].append(row)
                    hour += HOUR
        ids = sorted(by_enterprise)
        judged: dict[tuple[str, datetime], Any] = {}
        for first in range(0, len(ids), 5000):
            found = await session.execute(
                select(
                    enterprise_hour.c.enterprise_id,
                    enterprise_hour.c.hour_start,
                    enterprise_hour.c.provisional,
                    enterprise_hour.c.data_seq,
                    enterprise_hour.c.task_revisions,
                ).where(
                    enterprise_hour.c.enterprise_id.in_(ids[first : first + 5000]),
                    enterprise_hour.c.hour_start >= lo,
                )
            )
            for r in found.all():
                judged[(r.enterprise_id, r.hour_start)] = r
        recent = now - timedelta(hours=self.settings.control_plan_rejudge_hours)
        seqs = await self._data_seqs(session, ids, floor_hour(recent), now)
        grace = timedelta(minutes=self.settings.control_plan_grace_min)
        out = []
        for (enterprise_id, hour), hour_tasks in candidates.items():
            final = hour + HOUR + grace <= now
            if not final and now - hour < timedelta(minutes=rules.MIN_WINDOW_MIN):
                continue  # nothing can be judged yet in the hour in progress
            before = judged.get((enterprise_id, hour))
            if before is not None and not before.provisional:
                if hour < recent:
                    continue
                task_revisions = {r["task_id"]: r["revision"] for r in hour_tasks}
                if (
                    before.data_seq >= seqs.get((enterprise_id, hour), 0)
                    and before.task_revisions == task_revisions
                ):
                    continue
            out.append(_Work(enterprise_id, hour, final, hour_tasks))
        return out

    async def _data_seqs(
        self, session: AsyncSession, ids: list[str], lo: datetime, hi: datetime
    ) -> dict[tuple[str, datetime], int]:
        out: dict[tuple[str, datetime], int] = {}
        for start in range(0, len(ids), 5000):
            rows = await session.execute(
                select(
                    point_hour.c.enterprise_id, point_hour.c.hour_start, func.max(point_hour.c.seq)
                )
                .where(
                    point_hour.c.enterprise_id.in_(ids[start : start + 5000]),
                    point_hour.c.hour_start >= lo,
                    point_hour.c.hour_start <= hi,
                )
                .group_by(point_hour.c.enterprise_id, point_hour.c.hour_start)
            )
            for enterprise_id, hour, seq in rows.all():
                out[(enterprise_id, hour)] = int(seq or 0)
        return out

    # --------------------------------------------------------------------- one hour

    async def _judge_hour(
        self,
        session: AsyncSession,
        hour: datetime,
        work: list[_Work],
        orders: list[dict[str, Any]],
        now: datetime,
        result: PassResult,
    ) -> None:
        archives = {w.enterprise_id: self.index.enterprise(w.enterprise_id) for w in work}
        rows: dict[str, tuple[list[float | None], int]] = {}
        ids = sorted(archives)
        for start in range(0, len(ids), 5000):
            found = await session.execute(
                select(point_hour.c.point_id, point_hour.c.powers, point_hour.c.seq).where(
                    point_hour.c.enterprise_id.in_(ids[start : start + 5000]),
                    point_hour.c.hour_start == hour,
                )
            )
            for point_id, powers, seq in found.all():
                rows[point_id] = (list(powers) if powers else [None] * 60, int(seq or 0))
        day = hour.astimezone(self.tz).date()
        local_hour = hour.astimezone(self.tz).hour
        infos = []
        districts: set[str] = set()
        for enterprise_id, archive in archives.items():
            snap = self.index.view.enterprise(enterprise_id)
            district = snap.district_code if snap else ""
            districts.add(district)
            for p in archive.points.values():
                infos.append(baseline.PointInfo(p.id, district, archive.rated_kw(p)))
        known = self._profiles.setdefault(day, {})
        for old_day in [d for d in self._profiles if d < day - timedelta(days=1)]:
            del self._profiles[old_day]
        missing = [info for info in infos if info.point_id not in known]
        if missing:
            known.update(
                await baseline.profiles(
                    session,
                    points=missing,
                    day=day,
                    tz=self.tz,
                    control_days=control_days(orders, districts, self.tz),
                    days=self.settings.control_plan_baseline_days,
                    window_days=self.settings.control_plan_baseline_window_days,
                    min_days=self.settings.control_plan_baseline_min_days,
                )
            )
        profiles = known
        verdict_rows: list[dict[str, Any]] = []
        hour_rows: list[dict[str, Any]] = []
        for w in work:
            archive = archives[w.enterprise_id]
            points = {
                p.id: rules.PointHour(
                    point_id=p.id,
                    point_type=p.point_type,
                    powers=rows.get(p.id, ([None] * 60, 0))[0],
                    step=step_min(p),
                    threshold_kw=archive.run_threshold_kw(p),
                    idle_kw=archive.idle_kw(p),
                    rated_kw=archive.rated_kw(p),
                    is_key=p.is_key,
                    facility_id=p.facility_id,
                    baseline_kwh=profiles[p.id].at(local_hour) if p.id in profiles else None,
                    peak_kwh=profiles[p.id].peak_kwh if p.id in profiles else None,
                    baseline_source=profiles[p.id].source if p.id in profiles else "none",
                )
                for p in archive.points.values()
            }
            seq = max((rows[p][1] for p in points if p in rows), default=0)
            judged = self._judge_enterprise(w, archive, points, hour, now)
            if judged is None:
                continue
            verdicts, hour_row = judged
            hour_row["data_seq"] = seq
            hour_row["task_revisions"] = {t["task_id"]: t["revision"] for t in w.tasks}
            verdict_rows.extend(verdicts)
            hour_rows.append(hour_row)
        await store.store_hour(
            session,
            verdict_rows=verdict_rows,
            hour_rows=hour_rows,
            now=now,
            result=result,
            topic=self.settings.control_plan_compliance_topic,
        )

    def _judge_enterprise(
        self,
        w: _Work,
        archive: EnterpriseArchive,
        points: dict[str, rules.PointHour],
        hour: datetime,
        now: datetime,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
        verdicts: list[dict[str, Any]] = []
        pairs: list[tuple[str, str]] = []
        governing = max(w.tasks, key=lambda t: t["valid_from"])
        task_minutes: set[int] = set()
        for t in w.tasks:
            end = t["valid_to"] if w.final else min(t["valid_to"] or now, now)
            active = minutes_between(hour, t["valid_from"], end)
            task_minutes.update(active)
            for m in t["measures"]:
                effective = set(
                    minutes_between(hour, datetime.fromisoformat(m["effective_at"]), None)
                )
                minutes = [x for x in active if x in effective]
                if m["action"] == "OFFPEAK":
                    inside = window_minutes(m.get("windows") or [], hour, self.tz)
                    minutes = [x for x in minutes if x in inside]
                if m["action"] == "EXEMPT" or len(minutes) < rules.MIN_WINDOW_MIN:
                    continue
                for target_id, kind, judgement in self._judge_measure(m, archive, points, minutes):
                    pairs.append((m["action"], judgement.verdict))
                    evidence = judgement.evidence | {"reason": judgement.reason}
                    if judgement.verdict == rules.NON_COMPLIANT:
                        targets = self._target_points(m, archive, points, target_id)
                        evidence["curve_kw"] = rules.curve(targets)
                        evidence["baseline_kw"] = (
                            round(judgement.baseline_kwh * 60 / len(minutes), 2)
                            if judgement.baseline_kwh is not None
                            else None
                        )
                    verdicts.append(
                        {
                            "task_id": t["task_id"],
                            "target_id": target_id,
                            "hour_start": hour,
                            "enterprise_id": w.enterprise_id,
                            "district_code": t["district_code"],
                            "alert_id": t["alert_id"],
                            "action": m["action"],
                            "target_kind": kind,
                            "verdict": judgement.verdict,
                            "reason": judgement.reason,
                            "provisional": not w.final,
                            "baseline_kwh": store.rounded(judgement.baseline_kwh),
                            "actual_kwh": store.rounded(judgement.actual_kwh),
                            "evidence": evidence,
                        }
                    )
        if not verdicts:
            return None
        minutes = sorted(task_minutes)
        production = archive.production_points()
        producing = (
            any(
                rules.stats(points[p.id], minutes).running_share > rules.PRODUCING_SHARE
                for p in production
            )
            if production
            else not any(a == "STOP" and v == rules.COMPLIANT for a, v in pairs)
        )
        status = rules.enterprise_status(pairs, producing=producing)
        measured = production or archive.total_points()
        share = len(minutes) / 60
        actual = sum((rules.stats(points[p.id], minutes).mean_kw or 0.0) * share for p in measured)
        base = [points[p.id].baseline_kwh for p in measured]
        counts: dict[str, Any] = defaultdict(int)
        for _, v in pairs:
            counts[v] += 1
        hour_row = {
            "enterprise_id": w.enterprise_id,
            "hour_start": hour,
            "task_id": governing["task_id"],
            "alert_id": governing["alert_id"],
            "level": governing["level"],
            "district_code": governing["district_code"],
            "industry_code": governing.get("industry_code"),
            "performance_grade": governing.get("performance_grade"),
            "enterprise_name": governing.get("enterprise_name"),
            "status": status,
            "provisional": not w.final,
            "producing": producing,
            "baseline_kwh": store.rounded(sum(b for b in base if b is not None) * share)
            if measured and all(b is not None for b in base)
            else None,
            "actual_kwh": store.rounded(actual) if measured else None,
            "counts": dict(counts),
            "verdicts": [
                {
                    k: v[k]
                    for k in (
                        "target_id",
                        "action",
                        "verdict",
                        "reason",
                        "baseline_kwh",
                        "actual_kwh",
                    )
                }
                | {
                    "curve_kw": v["evidence"].get("curve_kw"),
                    "baseline_kw": v["evidence"].get("baseline_kw"),
                }
                for v in verdicts
                if v["verdict"] == rules.NON_COMPLIANT
            ],
        }
        return verdicts, hour_row

    def _target_points(
        self,
        m: dict[str, Any],
        archive: EnterpriseArchive,
        points: dict[str, rules.PointHour],
        target_id: str,
    ) -> list[rules.PointHour]:
        if m["action"] == "KEEP_CONTROL_RUNNING":
            group = next((g for g in archive.groups if f"keep:{g.id}" == target_id), None)
            if group is None:
                return []
            ids = [p.id for f in group.production_facility_ids for p in archive.facility_points(f)]
            return [points[i] for i in ids if i in points]
        return [
            points[p.id]
            for p in archive.target_points(m["target_kind"], list(m["target_ids"]))
            if p.id in points
        ]

    def _judge_measure(
        self,
        m: dict[str, Any],
        archive: EnterpriseArchive,
        points: dict[str, rules.PointHour],
        minutes: list[int],
    ) -> list[tuple[str, str, rules.Judgement]]:
        action = m["action"]
        if action == "KEEP_CONTROL_RUNNING":
            out = []
            for group in archive.groups:
                production = {
                    f: [points[p.id] for p in archive.facility_points(f) if p.id in points]
                    for f in group.production_facility_ids
                }
                control = {
                    f: [points[p.id] for p in archive.facility_points(f) if p.id in points]
                    for f in group.control_facility_ids
                }
                production = {f: ps for f, ps in production.items() if ps}
                control = {f: ps for f, ps in control.items() if ps}
                if not production or not control:
                    continue
                out.append(
                    (
                        f"keep:{group.id}",
                        "control_group",
                        rules.judge_keep(production, control, minutes, mode=group.required_mode),
                    )
                )
            return out
        targets = self._target_points(m, archive, points, m["measure_id"])
        if action in ("STOP", "OFFPEAK"):
            judgement = rules.judge_stop(targets, minutes)
        else:
            judgement = rules.judge_limit(
                targets,
                minutes,
                reduction_pct=m.get("reduction_pct"),
                allowed_load_pct=m.get("allowed_load_pct"),
            )
        return [(m["measure_id"], m["target_kind"], judgement)]

    # ------------------------------------------------------------------------ store
