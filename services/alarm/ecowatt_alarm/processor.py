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
- With several workers (`ECOWATT_ALARM_WORKERS`) each holds the runtimes of the enterprises
  its `telemetry.points` partitions carry (`partitions_assigned` / `partitions_revoked`),
  so its timer judges only those; rules, filings and learned values changed by another
  process are reloaded within one tick (`refresh_shared`). README "Several workers".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.bus import Bus, Partitions, Record
from ecowatt_kernel.contracts import (
    ContractError,
    ControlTaskChanged,
    PointReading,
    QualityFindingChanged,
    decode,
)
from ecowatt_kernel.db import Database
from ecowatt_kernel.metrics import LATENCY_BUCKETS
from ecowatt_kernel.outbox import OutboxRelay
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.scheduler import AdvisoryLeader, DailyJob, PeriodicJob
from prometheus_client import Histogram
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ecowatt_alarm import tables as T
from ecowatt_alarm.engine import Effects, Engine, EnterpriseRuntime, Sample
from ecowatt_alarm.engine.eventtime import Arrival, EventTime
from ecowatt_alarm.learning import Learning
from ecowatt_alarm.model import EnterpriseModel, ModelCache
from ecowatt_alarm.persistence import EffectWriter, ts
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
FUTURE_TOLERANCE_S = 600.0
DEFAULT_MINUTE_INTERVAL_S = 600.0
"""HJ 212's default minute-data interval: what one minute average covers until its
successor shows the device's own interval."""


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
        self.learning = Learning(
            database=database,
            timezone=settings.timezone,
            days=settings.alarm_learning_days,
            clock=clock,
            on_learned=lambda: self.models.invalidate(),
        )
        self.suppressions = Suppressions(view)
        self.findings: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.models = ModelCache(
            view,
            self.rules,
            self.learning.point,
            today=lambda: datetime.fromtimestamp(self.clock(), self.tz).date(),
        )
        self.engine = Engine(
            self.rules,
            self.suppressions,
            tz=settings.timezone,
            group_ratio=self.learning.group_ratio.get,
            findings=self.findings_of,
        )
        self.eventtime = EventTime(
            self.engine,
            lateness_s=settings.alarm_lateness_s,
            horizon_s=settings.alarm_reopen_horizon_s,
            gap_s=float(self.rules.state["offline_min_s"]),
            tz=settings.timezone,
        )
        self.runtimes: dict[str, EnterpriseRuntime] = {}
        # Per enterprise, per point: the data time of its last minute reading.
        self._minute_last: dict[str, dict[str, float]] = {}
        # The `telemetry.points` partitions this worker holds (None: every one, one process)
        # and whether their runtimes still wait to be read (the read failed in the hook).
        self.held: Partitions | None = None
        self._held_unloaded = False
        self._shared: tuple[Any, ...] | None = None
        self.replays = 0
        self.lock = asyncio.Lock()
        self.relay = OutboxRelay(
            engine=database.engine, bus=bus, table=T.outbox, poll_interval_s=0.5
        )
        self.writer = EffectWriter(settings=settings, view=view, model_of=self.models.get)
        self._jobs: list[PeriodicJob | DailyJob] = []
        self.readings_applied = 0
        self.readings_skipped = 0

    # ------------------------------------------------------------------------- lifecycle

    async def load(self) -> None:
        """Rules, learned values, filings, stop orders, findings and runtimes from the DB."""
        self._shared = await self._shared_fingerprint()  # before: a later change is seen
        await self.reload_rules()
        await self.learning.load()
        async with self.db.session() as s:
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
                run=self.learning.flush,
                every_s=self.settings.alarm_stats_flush_s,
                initial_delay_s=self.settings.alarm_stats_flush_s,
            ),
            PeriodicJob(
                name="alarm.shared-refresh",
                run=self.refresh_shared,
                every_s=self.settings.alarm_tick_s,
                initial_delay_s=self.settings.alarm_tick_s,
            ),
        ]
        if self.settings.worker == 0:  # once per city: worker 0 (and one replica, leader)
            self._jobs.append(
                DailyJob(
                    name="alarm.learning",
                    run=self.learning.learn,
                    timezone=self.settings.timezone,
                    at=dtime(hour, minute),
                    leader=AdvisoryLeader(self.db.engine, "alarm.learning"),
                    clock=lambda: datetime.fromtimestamp(self.clock(), UTC),
                )
            )
        for job in self._jobs:
            await job.start()

    async def stop(self) -> None:
        for job in reversed(self._jobs):
            with contextlib.suppress(Exception):
                await job.stop()
        self._jobs = []
        with contextlib.suppress(Exception):
            await self.learning.flush()
        await self.relay.stop()

    # -------------------------------------------------------------------------- readings

    async def handle_points(self, records: Sequence[Record]) -> None:
        if not self.view.ready:
            # Readings of enterprises the view does not hold yet would be dropped: wait for
            # the archive first (the partition does not advance meanwhile).
            await self.view.wait_ready(timeout_s=600)
        by_enterprise: dict[str, list[Arrival]] = defaultdict(list)
        now = self.clock()
        for record in records:
            try:
                event = decode(record).data
            except ContractError as exc:
                _logger.warning("telemetry.points: skipping undecodable record: %s", exc)
                continue
            if isinstance(event, PointReading):
                arrival = self._arrival(event, now)
                if arrival is not None:
                    by_enterprise[event.enterprise_id].append(arrival)
        if not by_enterprise:
            return

        async def work(
            rt: EnterpriseRuntime, model: EnterpriseModel, fx: Effects, conn: AsyncConnection
        ) -> bool:
            self.eventtime.offer(rt, model, by_enterprise[rt.enterprise_id], now, fx)
            await self._replay_if_due(rt, model, fx, conn, now)
            return True

        await self._run(list(by_enterprise), work)

    def _arrival(self, reading: PointReading, now: float) -> Arrival | None:
        """What the event-time layer takes from a reading: real-time and minute data (the
        sample, if valid with a power), never hour or day aggregates."""
        if reading.interval not in ("realtime", "minute"):
            return None
        t = reading.data_time.timestamp()
        if t > now + FUTURE_TOLERANCE_S:
            # A device clock far ahead would drag its enterprise's frontier along (and make
            # the other points look offline); validation reports such clocks.
            self.readings_skipped += 1
            return None
        self.readings_applied += 1
        power, voltage = power_of(reading) if reading.valid else (None, None)
        if power is None:
            return Arrival(reading.mn, t, None)
        interval = 0.0
        if reading.interval == "minute":
            last = self._minute_last.get(reading.enterprise_id)
            if last is None:
                last = self._minute_last[reading.enterprise_id] = {}
            previous = last.get(reading.point_id)
            spacing = t - previous if previous is not None else 0.0
            interval = spacing if 0 < spacing <= 3600 else DEFAULT_MINUTE_INTERVAL_S
            last[reading.point_id] = t
        return Arrival(reading.mn, t, Sample(t, reading.point_id, power, voltage, interval))

    async def _replay_if_due(
        self,
        rt: EnterpriseRuntime,
        model: EnterpriseModel,
        fx: Effects,
        conn: AsyncConnection,
        now: float,
    ) -> None:
        """Re-judge from the checkpoint once late data are in (`EventTime.replay`)."""
        if not self.eventtime.replay_due(rt, model, now):
            return
        kept = await self.writer.kept_samples(conn, rt.enterprise_id)
        kept.extend(s for e, s in fx.retain if e == rt.enterprise_id)
        self.eventtime.replay(rt, model, kept, now, fx)
        self.replays += 1

    async def _run(
        self,
        enterprise_ids: list[str],
        work: Callable[
            [EnterpriseRuntime, EnterpriseModel, Effects, AsyncConnection], Awaitable[bool]
        ],
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
                        if await work(rt, model, fx, conn) and self._must_persist(
                            rt, len(fx.states) + len(fx.alarms) > before
                        ):
                            rt.version += 1
                            written.append((e, rt.version, json.dumps(rt.to_dict())))
                    await self.writer.write_runtimes(conn, written)
                    await self.writer.write(conn, fx, now=self.clock())
            except BaseException:
                for e in touched:  # their in-memory copies may be ahead of the database
                    self.runtimes.pop(e, None)
                raise
        committed = time.time()
        for op in fx.alarms:
            if op.op == "open" and not op.alarm.get("suppressed_by"):
                DETECTION_SECONDS.labels(op.alarm["rule_code"]).observe(
                    max(committed - float(op.alarm["last_at"]), 0.0)
                )
        self.learning.collect(fx)
        if fx:
            self.relay.wake()

    def _must_persist(self, rt: EnterpriseRuntime, effects: bool) -> bool:
        """Write the runtime when it produced effects, when something material changed, when
        samples wait for the frontier (their offsets are about to be committed: the runtime
        is where they are kept), or when its last write is older than
        `alarm_runtime_persist_s` (bounds what a crash can lose: last values and
        accumulators, never a state, a timer, an alarm or a waiting sample)."""
        signature = rt.signature()
        now = time.monotonic()
        if (
            effects
            or rt.seq["pending"]
            or rt.persisted is None
            or rt.persisted[0] != signature
            or now - rt.persisted[1] >= self.settings.alarm_runtime_persist_s
        ):
            rt.persisted = (signature, now)
            return True
        return False

    def findings_of(self, enterprise_id: str, subjects: Any) -> list[dict[str, Any]]:
        """Open data-quality findings of the enterprise or of `subjects` (alarm evidence)."""
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

    # ------------------------------------------------------------- several workers

    async def partitions_revoked(self, partitions: Partitions) -> None:
        """`telemetry.points` partitions given up (their last batch is committed): forget
        the runtimes of the enterprises they carry — their next holder reads them afresh."""
        topic = self.settings.alarm_points_topic
        async with self.lock:
            for e in [e for e in self.runtimes if partitions.carries(topic, e)]:
                del self.runtimes[e]
                self._minute_last.pop(e, None)
            if self.held is not None:
                self.held = Partitions(self.held.held - partitions.held, self.held.counts)

    async def partitions_assigned(self, partitions: Partitions) -> None:
        """`telemetry.points` partitions received (Kafka assigns a member's whole share at
        once): hold the runtimes of exactly the enterprises they carry, read afresh, so that
        the timer also judges those whose devices fell silent."""
        self.held = partitions
        try:
            await self._load_held()
        except Exception:
            self._held_unloaded = True  # the timer tries again
            raise

    async def _load_held(self) -> None:
        held, topic = self.held, self.settings.alarm_points_topic
        if held is None:
            return
        async with self.lock:
            self.runtimes.clear()  # copies read before this assignment may be stale
            for e in [e for e in self._minute_last if not held.carries(topic, e)]:
                del self._minute_last[e]
            async with self.db.session() as s:
                ids = (await s.execute(select(T.runtime.c.enterprise_id))).scalars().all()
                wanted = [e for e in ids if held.carries(topic, e)]
                for i in range(0, len(wanted), 1000):
                    rows = await s.execute(
                        select(T.runtime).where(T.runtime.c.enterprise_id.in_(wanted[i : i + 1000]))
                    )
                    for row in rows.mappings():
                        rt = EnterpriseRuntime(row["enterprise_id"], row["state"])
                        rt.version = row["version"]
                        self.runtimes[rt.enterprise_id] = rt
            self._held_unloaded = False
        _logger.info(
            "alarm worker %d holds %d partitions, %d enterprises' runtimes",
            self.settings.worker,
            len(held.held),
            len(self.runtimes),
        )

    async def _shared_fingerprint(self) -> tuple[Any, ...]:
        """What changes when rules, filing decisions or learned values change."""
        f = T.filing.c
        query = select(
            select(func.max(T.rule.c.updated_at)).scalar_subquery(),
            select(func.max(func.coalesce(f.decided_at, f.filed_at))).scalar_subquery(),
            select(func.count()).select_from(T.filing).scalar_subquery(),
            select(func.max(T.learned.c.computed_at)).scalar_subquery(),
        )
        async with self.db.session() as s:
            return tuple((await s.execute(query)).one())

    async def refresh_shared(self) -> bool:
        """Reload what another process changed: rules and filing decisions (the API runs in
        worker 0 only), learned values (learned where the nightly job's lock is); True when
        something was reloaded."""
        now = await self._shared_fingerprint()
        before, self._shared = self._shared, now
        if before is None or before == now:
            return False
        if before[0] != now[0]:
            await self.reload_rules()
        if before[1:3] != now[1:3]:
            async with self.db.session() as s:
                for row in (await s.execute(select(T.filing))).mappings():
                    self._apply_filing(row)
        if before[3] != now[3]:
            await self.learning.load()
            self.models.invalidate()
        return True

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
        """The timer: at service time `now`, move the frontier of enterprises whose devices
        fell silent (silence is judged too: offline points, OFFLINE alarms) and re-judge late
        data whose devices went quiet; the number of enterprises that were due."""
        wall = self.clock() if now is None else now
        if self._held_unloaded:
            await self._load_held()
        due = []
        for e, rt in list(self.runtimes.items()):
            if enterprise_ids is not None and e not in enterprise_ids:
                continue
            model = self.models.get(e)
            if model is None:
                continue
            target = self.eventtime.target(rt, model, wall)
            frontier = rt.seq["frontier"]
            if (target is not None and (frontier is None or target > frontier)) or (
                self.eventtime.replay_due(rt, model, wall)
            ):
                due.append(e)
        if not due:
            return 0

        async def work(
            rt: EnterpriseRuntime, model: EnterpriseModel, fx: Effects, conn: AsyncConnection
        ) -> bool:
            self.eventtime.advance(rt, model, wall, fx)
            await self._replay_if_due(rt, model, fx, conn, wall)
            return True

        for i in range(0, len(due), 200):
            await self._run(due[i : i + 200], work)
        return len(due)

    async def learn(self, today: date | None = None) -> int:
        """Recompute learned values now (normally nightly)."""
        return await self.learning.learn(today)
