"""Reporting benchmark (`make bench-reporting`): history ingest with rollups, curves, and a
monthly city report. Uses a fresh database on DATABASE_URL and private Kafka topics.

(a) History ingest on one process: ENTERPRISES × POINTS_PER_ENTERPRISE points send MINUTES
    one-minute readings each (`PointReading`s, published to a private 12-partition topic
    before the clock starts); one `HistoryWriter` consumes them from Kafka (concurrent
    partitions, batches of up to 20,000) into the partitioned raw table and the 15-minute,
    hourly and daily rollups. Measured from the first handler call to the last reading
    stored. A sample of rollups is checked against a recomputation afterwards.
(b) Curves: one enterprise with 10 points gets a whole month of one-minute samples (written
    by the same writer, timed too); then through the service's HTTP API (in process,
    ASGI): the month of one point at raw (1-minute) resolution, and the 10 points aligned,
    REQUESTS times each; p50/p95 of the full request including JSON.
(c) Monthly report for a city of CITY_ENTERPRISES enterprises × 10 points: the archive copy,
    a month of daily rollups (the report reads rollups, never raw rows), ALARMS alarms and
    findings are written with SQL; then the report is generated end to end (statistics,
    Excel, PDF with charts) and timed.

Environment: BENCH_ENTERPRISES (200), BENCH_POINTS_PER_ENTERPRISE (10), BENCH_MINUTES (150),
BENCH_REQUESTS (30), BENCH_CITY_ENTERPRISES (3000), BENCH_ALARMS (6000).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from asgi_lifespan import LifespanManager  # noqa: E402
from ecowatt_kernel.app import create_app  # noqa: E402
from ecowatt_kernel.bus import KafkaBus, KafkaConnection, Record  # noqa: E402
from ecowatt_kernel.contracts import (  # noqa: E402
    EnterpriseSnapshot,
    PointReading,
    PointSnapshot,
    RegistryChange,
    TopicSpec,
    encode,
)
from ecowatt_kernel.db import scratch_database  # noqa: E402
from ecowatt_kernel.identity import DataScope, Identity, Role, TokenSigner, dev_key_pair  # noqa: E402
from ecowatt_reporting.history.service import HistoryWriter, rollup_differences  # noqa: E402
from ecowatt_reporting.service import SERVICE  # noqa: E402
from ecowatt_reporting.settings import ReportingSettings  # noqa: E402
from infra_env import infra  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from sqlalchemy import text  # noqa: E402

ENTERPRISES = int(os.environ.get("BENCH_ENTERPRISES", "200"))
POINTS_PER_ENTERPRISE = int(os.environ.get("BENCH_POINTS_PER_ENTERPRISE", "10"))
MINUTES = int(os.environ.get("BENCH_MINUTES", "150"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "30"))
CITY_ENTERPRISES = int(os.environ.get("BENCH_CITY_ENTERPRISES", "3000"))
ALARMS = int(os.environ.get("BENCH_ALARMS", "6000"))
TZ = ZoneInfo("Asia/Shanghai")
CHANGED = datetime(2026, 1, 1, tzinfo=UTC)
TYPES = ("total", "production", "production", "production", "control", "control", "control",
         "production", "control", "indirect")  # fmt: skip


def _archive(tag: str) -> list[RegistryChange]:
    snapshots: list[Any] = []
    for e in range(ENTERPRISES + 1):
        enterprise = f"B{e:04d}-{tag}"
        snapshots.append(
            EnterpriseSnapshot(
                id=enterprise, updated_at=CHANGED, name=f"基准企业{e:04d}",
                district_code=f"6101{e % 10 + 10:02d}", district_name=f"区{e % 10}",
                industry_code=f"{3000 + e % 40}", industry_name=f"行业{e % 40}",
            )
        )  # fmt: skip
        for p in range(POINTS_PER_ENTERPRISE):
            snapshots.append(
                PointSnapshot(
                    id=f"{enterprise}-P{p}", updated_at=CHANGED, enterprise_id=enterprise,
                    point_type=TYPES[p % len(TYPES)], name=f"点位{p}", rated_kw=50.0,
                )
            )  # fmt: skip
    return [
        RegistryChange(
            entity="enterprise" if isinstance(s, EnterpriseSnapshot) else "point",
            entity_id=s.id,
            operation="upsert",
            revision=1,
            changed_at=CHANGED,
            snapshot=s.model_dump(mode="json"),
        )
        for s in snapshots
    ]


def _reading(point: str, enterprise: str, at: datetime, minute: int) -> PointReading:
    power = 20.0 + (minute % 17)
    return PointReading(
        enterprise_id=enterprise,
        point_id=point,
        mn="0" * 24,
        cn="2011",
        data_time=at,
        values={
            "active_power_kw": power,
            "energy_delta_kwh": power / 60.0,
            "energy_total_kwh": 1000.0 + minute,
            "current_a:A": 30.1,
            "voltage_v:A": 229.5,
            "power_factor": 0.93,
        },
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(round(q * (len(ordered) - 1)), len(ordered) - 1)]


async def stage_ingest(
    bus: KafkaBus, database: Any, settings: ReportingSettings, tag: str
) -> dict[str, Any]:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=MINUTES + 5)
    messages = []
    for e in range(ENTERPRISES):
        enterprise = f"B{e:04d}-{tag}"
        for p in range(POINTS_PER_ENTERPRISE):
            for minute in range(MINUTES):
                reading = _reading(
                    f"{enterprise}-P{p}", enterprise, start + timedelta(minutes=minute), minute
                )
                messages.append(encode(reading, topic=settings.reporting_points_topic))
    total = len(messages)
    for i in range(0, total, 5000):
        await bus.publish(messages[i : i + 5000])
    del messages
    writer = HistoryWriter(
        database=database, timezone=settings.timezone, raw_retention_days=400, future_tolerance_h=26
    )
    handled = 0
    first: list[float] = []
    done = asyncio.Event()

    async def handle(records: list[Record]) -> None:
        nonlocal handled
        if not first:
            first.append(time.perf_counter())
        await writer.handle(records)
        handled += len(records)
        if handled >= total:
            done.set()

    subscription = await bus.subscribe(
        group=f"bench.{tag}.history", topics=[settings.reporting_points_topic], handler=handle,
        max_batch=20000, concurrent_partitions=True,
    )  # fmt: skip
    await asyncio.wait_for(done.wait(), 1800)
    elapsed = time.perf_counter() - first[0]
    await subscription.stop()
    async with database.session() as session:
        stored = await session.scalar(text("SELECT count(*) FROM point_sample"))
        problems = []
        sample = [
            f"B{e:04d}-{tag}-P{p}"
            for e in range(0, ENTERPRISES, max(ENTERPRISES // 5, 1))
            for p in (0, 1)
        ]
        for table in ("rollup_15m", "rollup_1h", "rollup_1d"):
            problems += await rollup_differences(
                session, table=table, timezone=settings.timezone, point_ids=sample,
                since=start - timedelta(days=1), until=start + timedelta(days=2),
            )  # fmt: skip
    return {
        "readings": total,
        "stored": stored,
        "seconds": elapsed,
        "rate": total / elapsed,
        "rollup_problems": len(problems),
    }


async def stage_month(
    database: Any, settings: ReportingSettings, tag: str, month: date, days: int
) -> dict[str, Any]:
    writer = HistoryWriter(
        database=database, timezone=settings.timezone, raw_retention_days=400, future_tolerance_h=26
    )
    enterprise = f"B{ENTERPRISES:04d}-{tag}"
    begin = datetime.combine(month, datetime.min.time(), tzinfo=TZ).astimezone(UTC)
    total, started = 0, time.perf_counter()
    batch: list[PointReading] = []
    for minute in range(days * 1440):
        at = begin + timedelta(minutes=minute)
        for p in range(POINTS_PER_ENTERPRISE):
            batch.append(_reading(f"{enterprise}-P{p}", enterprise, at, minute))
        if len(batch) >= 20000:
            total += (await writer.write(batch)).inserted
            batch = []
    if batch:
        total += (await writer.write(batch)).inserted
    elapsed = time.perf_counter() - started
    return {"rows": total, "seconds": elapsed, "rate": total / elapsed, "enterprise": enterprise}


CITY_SQL = [
    """INSERT INTO enterprise (id, name, district_code, district_name, industry_code,
        industry_name, industry_division, performance_grade, production_status, updated_at)
       SELECT 'C' || g || '-' || :tag, '城市企业' || g, '6101' || lpad((g % 12 + 10)::text, 2, '0'),
              '区' || (g % 12), (3000 + g % 60)::text, '行业' || (g % 60), '30',
              (ARRAY['A','B','C','D','none'])[g % 5 + 1], 'normal', now()
         FROM generate_series(1, :n) g""",
    """INSERT INTO point (id, enterprise_id, point_type, name, circuit, expected_interval_s,
        status, updated_at)
       SELECT 'C' || g || '-' || :tag || '-P' || p, 'C' || g || '-' || :tag,
              (ARRAY['total','production','production','production','control','control',
                     'control','production','control','indirect'])[p + 1], '点位' || p, 1, 60,
              'active', now()
         FROM generate_series(1, :n) g, generate_series(0, 9) p""",
    """INSERT INTO rollup_1d (point_id, day, enterprise_id, energy_kwh, energy_n, power_sum,
        power_n, power_max, power_min, samples, valid_samples)
       SELECT p.id, d::date, p.enterprise_id, 100 + (hashtext(p.id || d) % 50), 1400,
              30000, 1400, 40, 1, 1440 - abs(hashtext(p.id || d) % 60),
              1430 - abs(hashtext(p.id || d) % 80)
         FROM point p, generate_series(CAST(:first AS date), CAST(:last AS date),
                                       interval '1 day') d
        WHERE p.id LIKE 'C%-' || :tag || '-P%'""",
    """INSERT INTO alarm_record (alarm_id, enterprise_id, district_code, rule_code, rule_name,
        rule_version, subject_id, level, max_level, status, suppressed, first_at, opened_at,
        feedback_at, closed_at, changed_at)
       SELECT 'A' || g || '-' || :tag, 'C' || (g % :n + 1) || '-' || :tag, '610110',
              (ARRAY['R1','R2','R3','R5','OFFLINE'])[g % 5 + 1], '规则', 1, 'group', g % 3 + 1,
              g % 3 + 1, CASE WHEN g % 4 = 0 THEN 'closed' ELSE 'replied' END, g % 20 = 0,
              CAST(:start AS timestamptz) + (g % 700) * interval '1 hour',
              CAST(:start AS timestamptz) + (g % 700) * interval '1 hour' + interval '30 min',
              CAST(:start AS timestamptz) + (g % 700) * interval '1 hour' + interval '5 hours',
              CASE WHEN g % 4 = 0 THEN CAST(:start AS timestamptz) + (g % 700)
                   * interval '1 hour' + interval '30 hours' END,
              now()
         FROM generate_series(1, :alarms) g""",
    """INSERT INTO finding_record (finding_id, enterprise_id, rule_code, rule_version, status,
        subject_kind, subject_id, opened_at, changed_at)
       SELECT 'F' || g || '-' || :tag, 'C' || (g % :n + 1) || '-' || :tag,
              (ARRAY['negative_energy','constant_power','device_offline'])[g % 3 + 1], 1,
              'open', 'enterprise', 'x', CAST(:start AS timestamptz) + (g % 700)
              * interval '1 hour', now()
         FROM generate_series(1, :n) g""",
]


async def stage_report(
    app_runtime: Any, database: Any, tag: str, month: date, days: int
) -> dict[str, Any]:
    first = month
    last = month + timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), tzinfo=TZ).astimezone(UTC)
    seeded = time.perf_counter()
    async with database.transaction() as session:
        for sql in CITY_SQL:
            await session.execute(
                text(sql),
                {"tag": tag, "n": CITY_ENTERPRISES, "first": first, "last": last, "start": start,
                 "alarms": ALARMS},
            )  # fmt: skip
    seeding = time.perf_counter() - seeded
    async with database.session() as session:
        await session.execute(text("ANALYZE"))
    reports = app_runtime.reports
    started = time.perf_counter()
    report_id = await reports.request_report(
        kind="monthly", day=first, district_code=None, trigger="manual", requested_by="bench"
    )
    await reports.wait_idle()
    elapsed = time.perf_counter() - started
    async with database.session() as session:
        row = (
            await session.execute(
                text(
                    "SELECT status, error, length(xlsx), length(pdf), summary FROM report "
                    "WHERE id = :i"
                ),
                {"i": report_id},
            )
        ).one()
    return {
        "seconds": elapsed,
        "seeding_s": seeding,
        "status": row[0],
        "error": row[1],
        "xlsx_bytes": row[2],
        "pdf_bytes": row[3],
        "enterprises": row[4]["enterprises"] if row[4] else None,
        "points": row[4]["points"] if row[4] else None,
    }


async def main() -> None:
    tag = uuid.uuid4().hex[:6]
    kafka = infra("KAFKA_BOOTSTRAP_SERVERS")
    async with scratch_database(infra("DATABASE_URL"), prefix="ecowatt_bench") as url:
        prefix = f"bench.reporting.{tag}"
        settings = ReportingSettings(
            environment="test", bus_backend="kafka", kafka_bootstrap_servers=kafka,
            database_url=SecretStr(url), redis_url=SecretStr(infra("REDIS_URL")),
            reporting_points_topic=f"{prefix}.points", reporting_states_topic=f"{prefix}.states",
            reporting_alarms_topic=f"{prefix}.alarms",
            reporting_findings_topic=f"{prefix}.findings",
            reporting_compliance_topic=f"{prefix}.compliance",
            reporting_registry_topic=f"{prefix}.registry", reporting_consumer_prefix=prefix,
            reporting_schedule_enabled=False, database_pool_size=4,
        )  # fmt: skip
        bus = KafkaBus(KafkaConnection(bootstrap_servers=kafka))
        await bus.start()
        names = {
            settings.reporting_points_topic: 12,
            settings.reporting_states_topic: 1,
            settings.reporting_alarms_topic: 1,
            settings.reporting_findings_topic: 1,
            settings.reporting_compliance_topic: 1,
        }
        await bus.ensure_topics(
            [TopicSpec(n, "enterprise", "", partitions=p) for n, p in names.items()]
            + [
                TopicSpec(
                    settings.reporting_registry_topic, "entity", "", partitions=2, compacted=True
                )
            ]
        )
        changes = _archive(tag)
        for i in range(0, len(changes), 2000):
            await bus.publish(
                [encode(c, topic=settings.reporting_registry_topic) for c in changes[i : i + 2000]]
            )
        # The service (for the API and the report generator); its own history consumer is
        # pointed at an idle topic so that stage (a) measures exactly one writer.
        app = create_app(
            SERVICE,
            settings=settings.model_copy(
                update={"reporting_points_topic": settings.reporting_states_topic}
            ),
        )
        async with LifespanManager(app, startup_timeout=300, shutdown_timeout=60) as manager:
            runtime = app.state.context.state["reporting"]
            database = runtime.database
            await runtime.archive.synced.wait()
            print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)

            ingest = await stage_ingest(bus, database, settings, tag)
            print(
                f"(a) history ingest: {ingest['readings']:,} readings in {ingest['seconds']:.1f} s "
                f"= {ingest['rate']:,.0f} points/s (stored {ingest['stored']:,}; rollup "
                f"differences on a sample: {ingest['rollup_problems']})",
                flush=True,
            )
            today = datetime.now(UTC).astimezone(TZ).date()
            month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
            days = (today.replace(day=1) - month).days
            filled = await stage_month(database, settings, tag, month, days)
            print(
                f"(b) month of 1-minute data for {POINTS_PER_ENTERPRISE} points: "
                f"{filled['rows']:,} "
                f"rows written in {filled['seconds']:.1f} s = {filled['rate']:,.0f} points/s "
                "(writer without Kafka)",
                flush=True,
            )
            async with database.session() as session:
                await session.execute(text("ANALYZE"))
            signer = TokenSigner(dev_key_pair()[0], issuer="ecowatt-auth", audience="ecowatt")
            token = signer.sign(
                Identity(
                    subject="bench",
                    roles=frozenset({Role.CITY_SUPERVISOR}),
                    scope=DataScope(all=True),
                ),
                ttl=timedelta(hours=2),
            )
            headers = {"Authorization": f"Bearer {token}"}
            begin = datetime.combine(month, datetime.min.time(), tzinfo=TZ).astimezone(UTC)
            window = {
                "from": begin.isoformat(),
                "to": (begin + timedelta(days=days)).isoformat(),
                "resolution": "raw",
            }
            enterprise = filled["enterprise"]
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://reporting", timeout=120
            ) as client:
                results = {}
                for label, path in (
                    ("one point", f"/series/point/{enterprise}-P1"),
                    ("10 points aligned", f"/series/enterprise/{enterprise}"),
                ):
                    times = []
                    for _ in range(REQUESTS + 2):
                        started = time.perf_counter()
                        r = await client.get(path, params=window, headers=headers)
                        times.append((time.perf_counter() - started) * 1000)
                        assert r.status_code == 200, r.text[:300]
                    body = r.json()
                    cells = sum(len(s["values"]) for s in body["series"])
                    times = times[2:]  # the first two warm caches
                    results[label] = (
                        statistics.median(times),
                        _pct(times, 0.95),
                        cells,
                        len(r.content),
                    )
                    print(
                        f"(b) {label}, month at 1-minute resolution: "
                        f"p50 {results[label][0]:.0f} ms, p95 {results[label][1]:.0f} ms "
                        f"({cells:,} values, {len(r.content) / 1e6:.1f} MB JSON)",
                        flush=True,
                    )
            report = await stage_report(runtime, database, tag, month, days)
            print(
                f"(c) monthly report, {report['enterprises']:,} enterprises / "
                f"{report['points']:,} points, {ALARMS:,} alarms: {report['seconds']:.1f} s "
                f"({report['status']} {report['error'] or ''}; "
                f"xlsx {report['xlsx_bytes'] or 0:,} B, pdf {report['pdf_bytes'] or 0:,} B; "
                f"seeding {report['seeding_s']:.1f} s)",
                flush=True,
            )
            async with database.session() as session:
                sizes = await session.execute(
                    text(
                        "SELECT c.relname, coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) + "
                        "pg_total_relation_size(c.oid), (SELECT count(*) FROM pg_inherits j "
                        "WHERE j.inhparent = c.oid) FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace AND n.nspname = 'reporting' "
                        "LEFT JOIN pg_inherits i ON i.inhparent = c.oid "
                        "WHERE c.relkind IN ('r', 'p') "
                        "AND c.relispartition = false GROUP BY c.relname, c.oid ORDER BY 2 DESC"
                    )
                )
                print("table sizes:")
                for name, size, partitions in sizes:
                    count = await session.scalar(text(f'SELECT count(*) FROM "{name}"'))  # noqa: S608
                    extra = f", {partitions} partitions" if partitions else ""
                    print(f"  {name}: {count:,} rows, {float(size) / 1e6:.1f} MB{extra}")
        await bus.stop()


if __name__ == "__main__":
    asyncio.run(main())
