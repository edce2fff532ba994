"""The alarm processor: consumers, persistence, timers, learning.

- `telemetry.points` → the engine, one transaction per partition batch: the enterprises'
  runtimes (row-locked and version-checked, so a replica or the timer never works on a stale
  copy), state changes, alarms, journal entries and the outbox rows of `facility.states` and
  `alarms` are committed together before the offsets are.
- `registry.changes` → the `RegistryView` (and the model cache); `control.tasks` and
  `quality.findings` → suppression and evidence, stored in the schema so a restart rebuilds
  them.
- Jobs of the kernel's scheduler: the offline timer (`tick_s`) turns silence into offline
  states and OFFLINE alarms; learning statistics are flushed every `stats_flush_s`; a daily
  job (one replica, advisory leader) learns rated load per point and the control/production
  power ratio per group (§2.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.bus import Bus, Record, TransientError
from ecowatt_kernel.contracts import (
    AlarmChanged,
    ContractError,
    ControlTaskChanged,
    FacilityStateChanged,
    PointReading,
    QualityFindingChanged,
    decode,
    encode,
)
from ecowatt_kernel.db import Database
from ecowatt_kernel.metrics import LATENCY_BUCKETS
from ecowatt_kernel.outbox import OutboxRelay, enqueue
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.scheduler import AdvisoryLeader, DailyJob, PeriodicJob
from prometheus_client import Histogram
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ecowatt_alarm import tables as T
from ecowatt_alarm.engine import AlarmOp, Effects, Engine, EnterpriseRuntime, StateChange
from ecowatt_alarm.model import EnterpriseModel, Learned, ModelCache
from ecowatt_alarm.rules import DEFAULT_RULES, RuleConfig, RuleSet
from ecowatt_alarm.settings import AlarmSettings
from ecowatt_alarm.suppression import Suppressions

__all__ = ["AlarmProcessor", "power_of", "ts"]

_logger = logging.getLogger(__name__)
DETECTION_SECONDS = Histogram(
    "ecowatt_alarm_detection_seconds",
    "From the data time of the reading that confirmed an alarm to the alarm's commit "
    "(frame → alarm, device send delay included); replays fall in +Inf.",
    ["rule"],
    buckets=(*LATENCY_BUCKETS, 120.0, 300.0),
)
_LOG_BASE = math.log(1.02)
FUTURE_TOLERANCE_S = 600.0


_UPSERT_RUNTIME = text(
    """
    INSERT INTO alarm.runtime (enterprise_id, version, state, updated_at)
    SELECT u.e, u.v, u.s::jsonb, now()
    FROM unnest(CAST(:ids AS text[]), CAST(:versions AS bigint[]), CAST(:states AS text[]))
         AS u(e, v, s)
    ON CONFLICT (enterprise_id) DO UPDATE
       SET version = EXCLUDED.version, state = EXCLUDED.state, updated_at = EXCLUDED.updated_at
     WHERE alarm.runtime.version = EXCLUDED.version - 1
    RETURNING enterprise_id
    """
)


def ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def power_of(reading: PointReading) -> tuple[float | None, float | None]:
    """(power, voltage) of a reading: active power in kW, or current in A for current-only
    meters (the same thresholds then apply in amperes); values with quality flags are skipped."""
    values, quality = reading.values, reading.quality

    def ok(key: str) -> bool:
        return key in values and not quality.get(key)

    power: float | None = None
    if ok("active_power_kw"):
        power = values["active_power_kw"]
    else:
        currents = [
            v
            for k, v in values.items()
            if k.startswith("current_a") and ok(k) and k.count(":") <= 1
        ]
        if currents:
            power = max(currents)
    volts = [
        v for k, v in values.items() if k.startswith("voltage_v") and ok(k) and k.count(":") <= 1
    ]
    return power, (max(volts) if volts else None)


def _bin(value: float) -> int:
    return round(math.log(max(value, 1e-6)) / _LOG_BASE)


class AlarmProcessor:
    """Everything that runs in the background of one alarm process."""

    def __init__(
        self,
        *,
        database: Database,
        bus: Bus,
        settings: AlarmSettings,
        view: RegistryView,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = database
        self.bus = bus
        self.settings = settings
        self.view = view
        self.clock = clock
        self.tz = ZoneInfo(settings.timezone)
        self.rules = RuleSet()
        self.learned_points: dict[str, Learned] = {}
        self.group_ratio: dict[str, float] = {}
        self.suppressions = Suppressions(view)
        self.findings: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.models = ModelCache(
            view,
            self.rules,
            lambda pid: self.learned_points.get(pid, Learned()),
            today=lambda: datetime.fromtimestamp(self.clock(), self.tz).date(),
        )
        self.engine = Engine(
            self.rules,
            self.suppressions,
            tz=settings.timezone,
            group_ratio=self.group_ratio.get,
            findings=self._findings_of,
        )
        self.runtimes: dict[str, EnterpriseRuntime] = {}
        self.lock = asyncio.Lock()
        self.relay = OutboxRelay(
            engine=database.engine, bus=bus, table=T.outbox, poll_interval_s=0.5
        )
        self._stats: dict[tuple[str, str, str], list[Any]] = {}
        self._jobs: list[PeriodicJob | DailyJob] = []
        self.readings_applied = 0
        self.readings_skipped = 0

    # ------------------------------------------------------------------------- lifecycle

    async def load(self) -> None:
        """Rules, learned values, filings, stop orders, findings and runtimes from the DB."""
        await self.reload_rules()
        async with self.db.session() as s:
            for row in (await s.execute(select(T.learned))).mappings():
                self._set_learned(row)
            for row in (await s.execute(select(T.filing))).mappings():
                self._apply_filing(row)
            for row in (await s.execute(select(T.control_task))).mappings():
                self.suppressions.set_task(
                    row["enterprise_id"],
                    row["task_id"],
                    row["alert_id"],
                    row["measures"],
                    row["valid_from"],
                    row["valid_to"],
                )
            findings = select(T.quality_finding).where(T.quality_finding.c.status != "resolved")
            for row in (await s.execute(findings)).mappings():
                self.findings[row["enterprise_id"]][row["finding_id"]] = dict(row)
            for row in (await s.execute(select(T.runtime))).mappings():
                rt = EnterpriseRuntime(row["enterprise_id"], row["state"])
                rt.version = row["version"]
                self.runtimes[row["enterprise_id"]] = rt
        self.models.invalidate()

    async def reload_rules(self) -> None:
        async with self.db.session() as s:
            rows = (await s.execute(select(T.rule))).mappings().all()
        rules = dict(DEFAULT_RULES)
        for row in rows:
            base = DEFAULT_RULES.get(row["code"])
            params = {**(base.params if base else {}), **row["params"]}
            rules[row["code"]] = RuleConfig(
                row["code"],
                row["version"],
                row["name"],
                row["name_en"],
                row["description"],
                params,
                row["enabled"],
            )
        self.rules.rules = rules
        self.rules.generation += 1
        self.models.invalidate()

    async def start(self) -> None:
        await self.relay.start()
        hour, minute = (int(x) for x in self.settings.alarm_nightly_at.split(":"))
        self._jobs = [
            PeriodicJob(
                name="alarm.offline-timer",
                run=self.tick,
                every_s=self.settings.alarm_tick_s,
                initial_delay_s=self.settings.alarm_tick_s,
            ),
            PeriodicJob(
                name="alarm.learning-stats",
                run=self.flush_stats,
                every_s=self.settings.alarm_stats_flush_s,
                initial_delay_s=self.settings.alarm_stats_flush_s,
            ),
            DailyJob(
                name="alarm.learning",
                run=self.learn,
                timezone=self.settings.timezone,
                at=dtime(hour, minute),
                leader=AdvisoryLeader(self.db.engine, "alarm.learning"),
                clock=lambda: datetime.fromtimestamp(self.clock(), UTC),
            ),
        ]
        for job in self._jobs:
            await job.start()

    async def stop(self) -> None:
        for job in reversed(self._jobs):
            with contextlib.suppress(Exception):
                await job.stop()
        self._jobs = []
        with contextlib.suppress(Exception):
            await self.flush_stats()
        await self.relay.stop()

    # -------------------------------------------------------------------------- readings

    async def handle_points(self, records: Sequence[Record]) -> None:
        if not self.view.ready:
            # Readings of enterprises the view does not hold yet would be dropped: wait for
            # the archive first (the partition does not advance meanwhile).
            await self.view.wait_ready(timeout_s=600)
        by_enterprise: dict[str, list[PointReading]] = defaultdict(list)
        for record in records:
            try:
                event = decode(record).data
            except ContractError as exc:
                _logger.warning("telemetry.points: skipping undecodable record: %s", exc)
                continue
            if isinstance(event, PointReading) and event.valid and event.interval != "day":
                by_enterprise[event.enterprise_id].append(event)
        if not by_enterprise:
            return
        received = self.clock()
        effects: list[Effects] = []

        def work(rt: EnterpriseRuntime, model: EnterpriseModel, fx: Effects) -> bool:
            effects[:] = [fx]
            applied = False
            for reading in by_enterprise[rt.enterprise_id]:
                power, voltage = power_of(reading)
                if power is None:
                    continue
                if reading.data_time.timestamp() > received + FUTURE_TOLERANCE_S:
                    # A device clock far ahead would drag the enterprise's clock along and
                    # make every other point look offline; validation reports such clocks.
                    self.readings_skipped += 1
                    continue
                applied |= self.engine.apply_reading(
                    rt,
                    model,
                    reading.point_id,
                    reading.data_time.timestamp(),
                    power,
                    voltage,
                    received,
                    fx,
                )
                self.readings_applied += 1
            return applied

        await self._run(list(by_enterprise), work)
        committed = time.time()
        for op in effects[0].alarms if effects else ():
            if op.op == "open" and not op.alarm.get("suppressed_by"):
                DETECTION_SECONDS.labels(op.alarm["rule_code"]).observe(
                    max(committed - float(op.alarm["last_at"]), 0.0)
                )

    async def _run(
        self,
        enterprise_ids: list[str],
        work: Callable[[EnterpriseRuntime, EnterpriseModel, Effects], bool],
    ) -> None:
        """Apply `work` to the enterprises' runtimes and persist everything in one transaction.

        Concurrency is optimistic: a runtime row is written only if its version is still the
        one this process read (another replica, after a rebalance, may have moved it on); if
        not, the transaction rolls back, the stale copies are dropped and the batch is
        retried (TransientError), reading the rows afresh.
        """
        ids = sorted(e for e in enterprise_ids if self.models.get(e) is not None)
        if not ids:
            return
        async with self.lock:
            touched: list[str] = []
            try:
                async with self.db.engine.begin() as conn:
                    missing = [e for e in ids if e not in self.runtimes]
                    if missing:
                        rows = await conn.execute(
                            select(T.runtime).where(T.runtime.c.enterprise_id.in_(missing))
                        )
                        for row in rows.mappings():
                            rt = EnterpriseRuntime(row["enterprise_id"], row["state"])
                            rt.version = row["version"]
                            self.runtimes[rt.enterprise_id] = rt
                    fx = Effects()
                    written: list[tuple[str, int, str]] = []
                    for e in ids:
                        rt = self.runtimes.setdefault(e, EnterpriseRuntime(e))
                        model = self.models.get(e)
                        assert model is not None
                        touched.append(e)
                        before = len(fx.states) + len(fx.alarms)
                        if work(rt, model, fx) and self._must_persist(
                            rt, len(fx.states) + len(fx.alarms) > before
                        ):
                            rt.version += 1
                            written.append((e, rt.version, json.dumps(rt.to_dict())))
                    if written:
                        result = await conn.execute(
                            _UPSERT_RUNTIME,
                            {
                                "ids": [w[0] for w in written],
                                "versions": [w[1] for w in written],
                                "states": [w[2] for w in written],
                            },
                        )
                        stored = {row[0] for row in result}
                        if len(stored) < len(written):
                            stale = sorted({w[0] for w in written} - stored)
                            raise TransientError(
                                f"alarm runtime of {', '.join(stale[:5])} was changed by "
                                "another process; reloading"
                            )
                    await self._persist(conn, fx)
            except BaseException:
                for e in touched:  # their in-memory copies may be ahead of the database
                    self.runtimes.pop(e, None)
                raise
        self._collect_stats(fx)
        if fx:
            self.relay.wake()

    def _must_persist(self, rt: EnterpriseRuntime, effects: bool) -> bool:
        """Write the runtime when it produced effects, when something material changed, or
        when its last write is older than `alarm_runtime_persist_s` (bounds what a crash can
        lose: last values and accumulators, never a state, a timer or an alarm)."""
        signature = rt.signature()
        now = time.monotonic()
        if (
            effects
            or rt.persisted is None
            or rt.persisted[0] != signature
            or now - rt.persisted[1] >= self.settings.alarm_runtime_persist_s
        ):
            rt.persisted = (signature, now)
            return True
        return False

    async def _persist(self, s: AsyncSession | AsyncConnection, fx: Effects) -> None:
        messages = []
        if fx.states:
            await s.execute(
                T.state_change.insert(),
                [
                    {
                        "enterprise_id": c.enterprise_id,
                        "subject_kind": c.subject_kind,
                        "subject_id": c.subject_id,
                        "state": c.state,
                        "previous_state": c.previous_state,
                        "since": ts(c.since),
                        "reason": c.reason,
                        "evidence": c.evidence,
                    }
                    for c in fx.states
                ],
            )
            messages.extend(self._state_event(c) for c in fx.states)
        for op in fx.alarms:
            messages.append(await self._persist_alarm(s, op))
        await enqueue(s, T.outbox, messages)

    def _state_event(self, c: StateChange) -> Any:
        facility_id = None
        if c.subject_kind == "point":
            point = self.view.point(c.subject_id)
            facility_id = point.facility_id if point else None
        event = FacilityStateChanged(
            enterprise_id=c.enterprise_id,
            subject_kind=c.subject_kind,  # type: ignore[arg-type]
            subject_id=c.subject_id,
            state=c.state,  # type: ignore[arg-type]
            previous_state=c.previous_state,
            since=ts(c.since),  # type: ignore[arg-type]
            reason=c.reason,
            evidence=c.evidence,
            facility_id=facility_id,
        )
        return encode(event, topic=self.settings.alarm_states_topic)

    async def _persist_alarm(self, s: AsyncSession | AsyncConnection, op: AlarmOp) -> Any:
        a = op.alarm
        model = self.models.get(a["enterprise_id"])
        evidence = {
            "series": {
                pid: [[ts(t).isoformat(), p] for t, p in points]  # type: ignore[union-attr]
                for pid, points in a.get("series", {}).items()
            },
            "points": self._point_evidence(model, a.get("point_ids", [])),
        }
        now = datetime.now(UTC)
        if op.op == "open":
            status = "suppressed" if a.get("suppressed_by") else "open"
            await s.execute(
                insert(T.alarm)
                .values(
                    id=a["id"],
                    rule_code=a["rule_code"],
                    rule_version=a["rule_version"],
                    rule_name=a["rule_name"],
                    enterprise_id=a["enterprise_id"],
                    enterprise_name=model.name if model else None,
                    district_code=model.district_code if model else None,
                    zone=model.zone if model else None,
                    industry_code=model.industry_code if model else None,
                    subject_kind=a["subject_kind"],
                    subject_id=a["subject_id"],
                    group_id=a.get("group_id"),
                    facility_ids=a.get("facility_ids", []),
                    point_ids=a.get("point_ids", []),
                    level=a["level"],
                    status=status,
                    active=a.get("active", True),
                    suppressed_by=a.get("suppressed_by"),
                    first_at=ts(a["first_at"]),
                    last_at=ts(a["last_at"]),
                    recovered_at=ts(a.get("recovered_at")),
                    explanation=a["explanation"],
                    detail=a.get("detail", {}),
                    evidence=evidence,
                )
                .on_conflict_do_nothing()
            )
            await s.execute(
                T.journal.insert().values(
                    alarm_id=a["id"],
                    actor="system",
                    actor_role="system",
                    action="suppressed" if status == "suppressed" else "opened",
                    status_after=status,
                    text=a["explanation"],
                )
            )
            change = "suppressed" if status == "suppressed" else "opened"
        else:
            values: dict[str, Any] = {
                "level": a["level"],
                "last_at": ts(a["last_at"]),
                "explanation": a["explanation"],
                "evidence": evidence,
                "updated_at": now,
                "active": a["active"],
                "recovered_at": ts(a.get("recovered_at")),
            }
            if a.get("detail"):
                values["detail"] = a["detail"]
            if op.op == "unsuppress":
                values["status"] = "open"
            row = (
                await s.execute(
                    update(T.alarm)
                    .where(T.alarm.c.id == a["id"])
                    .values(**values)
                    .returning(T.alarm.c.status)
                )
            ).first()
            status = row.status if row else "open"
            if op.op in ("recover", "unsuppress", "escalate"):
                await s.execute(
                    T.journal.insert().values(
                        alarm_id=a["id"],
                        actor="system",
                        actor_role="system",
                        action={
                            "recover": "recovered",
                            "unsuppress": "unsuppressed",
                            "escalate": "escalated",
                        }[op.op],
                        status_after=status,
                        text=a["explanation"],
                        data={"level": a["level"]},
                    )
                )
            change = {
                "update": "updated",
                "escalate": "escalated",
                "recover": "recovered",
                "unsuppress": "opened",
            }[op.op]
        return encode(
            self.alarm_event(a, change, status, model), topic=self.settings.alarm_alarms_topic
        )

    def alarm_event(
        self, a: dict[str, Any], change: str, status: str, model: EnterpriseModel | None
    ) -> AlarmChanged:
        return AlarmChanged(
            alarm_id=a["id"],
            enterprise_id=a["enterprise_id"],
            rule_code=a["rule_code"],
            rule_version=a["rule_version"],
            subject_id=a["subject_id"],
            change=change,  # type: ignore[arg-type]
            status=status,
            level=a["level"],
            opened_at=ts(a["first_at"]),  # type: ignore[arg-type]
            changed_at=datetime.now(UTC),
            explanation=a["explanation"],
            evidence={"detail": a.get("detail", {}), "point_ids": a.get("point_ids", [])},
            rule_name=a.get("rule_name"),
            subject_kind=a.get("subject_kind"),
            group_id=a.get("group_id"),
            facility_ids=list(a.get("facility_ids", [])),
            active=a.get("active"),
            first_at=ts(a["first_at"]),
            last_at=ts(a.get("last_at")),
            recovered_at=ts(a.get("recovered_at")),
            suppressed_by=a.get("suppressed_by"),
            district_code=model.district_code if model else None,
        )

    def _point_evidence(
        self, model: EnterpriseModel | None, point_ids: list[str]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for pid in point_ids:
            pm = model.points.get(pid) if model else None
            if pm is None:
                continue
            out[pid] = {
                "name": pm.name,
                "kind": pm.kind,
                "threshold_kw": round(pm.threshold_kw, 3),
                "threshold_source": pm.threshold_source,
                "threshold_basis": pm.threshold_basis,
                "idle_kw": round(pm.idle_kw, 3),
                "low_load_kw": None if pm.low_load_kw is None else round(pm.low_load_kw, 3),
            }
        return out

    def _findings_of(self, enterprise_id: str, subjects: Any) -> list[dict[str, Any]]:
        wanted = set(subjects) | {enterprise_id}
        return [
            {
                "finding_id": f["finding_id"],
                "rule_code": f["rule_code"],
                "subject_id": f["subject_id"],
            }
            for f in self.findings.get(enterprise_id, {}).values()
            if f["subject_id"] in wanted
        ]

    # ---------------------------------------------------------------------- other topics

    async def handle_tasks(self, records: Sequence[Record]) -> None:
        for record in records:
            try:
                task = decode(record).data
            except ContractError as exc:
                _logger.warning("control.tasks: skipping: %s", exc)
                continue
            if not isinstance(task, ControlTaskChanged):
                continue
            valid_to = task.valid_to
            if task.change == "ended" and valid_to is None:
                valid_to = datetime.now(UTC)
            async with self.db.transaction() as s:
                values = {
                    "alert_id": task.alert_id,
                    "enterprise_id": task.enterprise_id,
                    "change": task.change,
                    "valid_from": task.valid_from,
                    "valid_to": valid_to,
                    "measures": task.measures,
                    "updated_at": datetime.now(UTC),
                }
                await s.execute(
                    insert(T.control_task)
                    .values(task_id=task.task_id, **values)
                    .on_conflict_do_update(index_elements=["task_id"], set_=values)
                )
            self.suppressions.set_task(
                task.enterprise_id,
                task.task_id,
                task.alert_id,
                task.measures,
                task.valid_from,
                valid_to,
            )

    async def handle_findings(self, records: Sequence[Record]) -> None:
        for record in records:
            try:
                finding = decode(record).data
            except ContractError as exc:
                _logger.warning("quality.findings: skipping: %s", exc)
                continue
            if not isinstance(finding, QualityFindingChanged):
                continue
            values = {
                "enterprise_id": finding.enterprise_id,
                "rule_code": finding.rule_code,
                "status": finding.status,
                "subject_kind": finding.subject_kind,
                "subject_id": finding.subject_id,
                "changed_at": finding.changed_at,
                "evidence": finding.evidence,
            }
            async with self.db.transaction() as s:
                await s.execute(
                    insert(T.quality_finding)
                    .values(finding_id=finding.finding_id, **values)
                    .on_conflict_do_update(index_elements=["finding_id"], set_=values)
                )
            bucket = self.findings[finding.enterprise_id]
            if finding.status == "resolved":
                bucket.pop(finding.finding_id, None)
            else:
                bucket[finding.finding_id] = {"finding_id": finding.finding_id, **values}

    def _apply_filing(self, row: Any) -> None:
        self.suppressions.set_filing(
            row["enterprise_id"],
            row["id"],
            approved=row["status"] == "approved",
            facility_ids=list(row["facility_ids"] or []),
            start=row["starts_at"],
            end=row["ends_at"],
            reason=row["reason"],
        )

    def filing_changed(self, row: Any) -> None:
        """Called by the API after a filing is approved, rejected or withdrawn."""
        self._apply_filing(row)

    # --------------------------------------------------------------------------- timers

    async def tick(self, now: float | None = None, enterprise_ids: list[str] | None = None) -> int:
        """Offline sweep at wall time `now`; the number of enterprises that were due."""
        wall = self.clock() if now is None else now
        due = []
        for e, rt in list(self.runtimes.items()):
            if enterprise_ids is not None and e not in enterprise_ids:
                continue
            model = self.models.get(e)
            if model is None:
                continue
            deadline = self.engine.next_deadline(rt, model)
            if deadline is not None and deadline <= wall:
                due.append(e)
        if not due:
            return 0

        def work(rt: EnterpriseRuntime, model: EnterpriseModel, fx: Effects) -> bool:
            before = len(fx.states) + len(fx.alarms)
            self.engine.tick(rt, model, wall, fx)
            return len(fx.states) + len(fx.alarms) > before

        for i in range(0, len(due), 200):
            await self._run(due[i : i + 200], work)
        return len(due)

    # ------------------------------------------------------------------------- learning

    def _collect_stats(self, fx: Effects) -> None:
        if not fx.stats:
            return
        day = datetime.fromtimestamp(self.clock(), self.tz).date().isoformat()
        for kind, subject, value in fx.stats:
            if value <= 0:
                continue
            entry = self._stats.setdefault((kind, subject, day), [0, 0.0, defaultdict(int)])
            entry[0] += 1
            entry[1] += value
            entry[2][_bin(value)] += 1

    async def flush_stats(self) -> None:
        stats, self._stats = self._stats, {}
        if not stats:
            return
        rows = [
            {
                "kind": kind,
                "subject_id": subject,
                "day": date.fromisoformat(day),
                "count": count,
                "total": total,
                "bins": {str(k): v for k, v in bins.items()},
            }
            for (kind, subject, day), (count, total, bins) in sorted(stats.items())
        ]
        table = T.point_day_stats
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["kind", "subject_id", "day"],
            set_={
                "count": table.c.count + stmt.excluded.count,
                "total": table.c.total + stmt.excluded.total,
                "bins": func.alarm.merge_bins(table.c.bins, stmt.excluded.bins),
            },
        )
        async with self.db.transaction() as s:
            for i in range(0, len(rows), 1000):
                await s.execute(stmt, rows[i : i + 1000])

    async def learn(self, today: date | None = None) -> int:
        """Recompute learned rated load per point and power ratio per group (§2.2)."""
        await self.flush_stats()
        day = today or datetime.fromtimestamp(self.clock(), self.tz).date()
        since = day - timedelta(days=self.settings.alarm_learning_days)
        merged: dict[tuple[str, str], list[Any]] = {}
        async with self.db.session() as s:
            result = await s.execute(
                select(T.point_day_stats).where(T.point_day_stats.c.day > since)
            )
            for row in result.mappings():
                entry = merged.setdefault(
                    (row["kind"], row["subject_id"]), [0, 0.0, defaultdict(int), set()]
                )
                entry[0] += row["count"]
                entry[1] += row["total"]
                entry[3].add(row["day"])
                for k, v in row["bins"].items():
                    entry[2][int(k)] += v
        now = datetime.now(UTC)
        rows = []
        for (kind, subject), (count, total, bins, days) in merged.items():
            if count < 30:
                continue
            mean = total / count
            above = {k: v for k, v in bins.items() if 1.02**k > mean}
            mode = max(above.items(), key=lambda kv: (kv[1], kv[0]))[0] if above else None
            ordered = sorted(bins.items())
            half, acc, median = count / 2, 0, None
            for k, v in ordered:
                acc += v
                if acc >= half:
                    median = 1.02**k
                    break
            rows.append(
                {
                    "kind": kind,
                    "subject_id": subject,
                    "rated_kw": round(1.02**mode, 3)
                    if mode is not None and kind == "point"
                    else None,
                    "running_median": round(median, 4) if median is not None else None,
                    "samples": count,
                    "days": len(days),
                    "computed_at": now,
                }
            )
        if rows:
            async with self.db.transaction() as s:
                for row in rows:
                    await s.execute(
                        insert(T.learned)
                        .values(**row)
                        .on_conflict_do_update(
                            index_elements=["kind", "subject_id"],
                            set_={k: v for k, v in row.items() if k not in ("kind", "subject_id")},
                        )
                    )
            for row in rows:
                self._set_learned(row)
            self.models.invalidate()
        return len(rows)

    def _set_learned(self, row: Any) -> None:
        if row["kind"] == "point":
            self.learned_points[row["subject_id"]] = Learned(
                rated_kw=row["rated_kw"], running_median_kw=row["running_median"]
            )
        elif row["running_median"]:
            self.group_ratio[row["subject_id"]] = row["running_median"]
