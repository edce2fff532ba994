"""Two alarm worker processes (`python -m ecowatt_alarm.worker`, `ECOWATT_ALARM_WORKERS`)
divide the partitions of `telemetry.points` and raise each enterprise's alarm exactly once,
also when one of them is SIGKILLed in the middle of the stream.

Real Kafka, PostgreSQL (a scratch database) and Redis; private topics. Eight enterprises of
the synthetic city whose control facility is off from minute 120 to 245 (R1 opens at
minute 150 and recovers at 245). Minutes 0–100 go through worker 0 alone (it holds every
runtime); worker 1 joins, and minutes 100–200 go through both: every R1 opens, each worker
holding partitions that carry some of them. Then worker 1 is killed while minutes 200–300
are being handled, and the rest of the day follows: worker 0 takes its partitions back and
reads their enterprises' runtimes from PostgreSQL when they are assigned — had it kept its
copies from before worker 1 joined, the optimistic version check would refuse them and
retry (logged): the test requires none — the alarms that worker 1 opened recover on worker
0, and no alarm opens twice.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from alarm_city import SyntheticCity
from ecowatt_kernel.bus import KafkaBus, KafkaConnection, Record
from ecowatt_kernel.bus.partitioner import partition_for_key
from ecowatt_kernel.contracts import TOPICS, AlarmChanged, Event, decode, encode
from ecowatt_kernel.db import Database, scratch_database
from sqlalchemy import text
from worker_processes import WorkerProcess, all_committed, children_of, infra_env, wait_until

pytestmark = pytest.mark.integration

R1_ENTERPRISES = 8
JOIN_AT = 100  # minute: worker 1 joins
KILL_AT = 200  # minute: every R1 is open, none recovered yet


def worker_env(
    index: int, *, kafka: str, database: str, redis: str, topics: dict[str, str], prefix: str
) -> dict[str, str]:
    return {
        **infra_env(kafka=kafka, database=database, redis=redis, instance=f"alarm-w{index}"),
        "ECOWATT_ALARM_WORKERS": "2",
        "ECOWATT_ALARM_WORKER_INDEX": str(index),
        "ECOWATT_ALARM_CONSUMER_PREFIX": prefix,
        "ECOWATT_ALARM_NOTIFY_ENABLED": "false",
        "ECOWATT_ALARM_POINTS_TOPIC": topics["telemetry.points"],
        "ECOWATT_ALARM_REGISTRY_TOPIC": topics["registry.changes"],
        "ECOWATT_ALARM_TASKS_TOPIC": topics["control.tasks"],
        "ECOWATT_ALARM_FINDINGS_TOPIC": topics["quality.findings"],
        "ECOWATT_ALARM_STATES_TOPIC": topics["facility.states"],
        "ECOWATT_ALARM_ALARMS_TOPIC": topics["alarms"],
    }


async def test_two_workers_divide_partitions_and_survive_a_kill(
    kafka_bootstrap: str, database_url: str, redis_url: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    prefix = f"test.alarm-workers.{tag}"
    topics = {name: f"{prefix}.{name}" for name in TOPICS}
    points, group = topics["telemetry.points"], f"{prefix}.points"
    # Two days ago: the whole synthetic evening lies in the workers' (wall-clock) past.
    day = (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=2)).date()
    city = SyntheticCity("WK", day, scenarios=["r1_pos"] * R1_ENTERPRISES, healthy=0)
    enterprises = [e.id for e in city.enterprises]
    readings = list(city.readings())
    join_at, kill_at, resume_at = city.at(JOIN_AT), city.at(KILL_AT), city.at(KILL_AT + 100)
    phases = [
        [r for r in readings if r.data_time < join_at],
        [r for r in readings if join_at <= r.data_time < kill_at],
        [r for r in readings if kill_at <= r.data_time < resume_at],
        [r for r in readings if r.data_time >= resume_at],
    ]

    bus = KafkaBus(KafkaConnection(bootstrap_servers=kafka_bootstrap))
    await bus.start()
    workers: list[WorkerProcess] = []
    try:
        await bus.ensure_topics(
            [dataclasses.replace(spec, name=topics[spec.name]) for spec in TOPICS.values()]
        )

        async def publish(events: Sequence[Event], topic: str) -> None:
            for i in range(0, len(events), 2000):
                await bus.publish([encode(e, topic=topic) for e in events[i : i + 2000]])

        await publish(city.registry_changes(), topics["registry.changes"])
        alarms: list[tuple[str, AlarmChanged]] = []

        async def collect(records: Sequence[Record]) -> None:
            for record in records:
                envelope = decode(record)
                alarms.append((str(envelope.id), envelope.data))

        await bus.subscribe(group=f"{prefix}.test", topics=[topics["alarms"]], handler=collect)

        def r1(change: str) -> dict[str, set[str]]:
            """Event ids of R1 `change`s per enterprise (a re-published event keeps its id)."""
            seen: dict[str, set[str]] = defaultdict(set)
            for event_id, alarm in alarms:
                if alarm.rule_code == "R1" and alarm.change == change:
                    seen[alarm.enterprise_id].add(event_id)
            return seen

        async def all_handled() -> bool:
            return await all_committed(bus, kafka_bootstrap, group, points)

        async with scratch_database(database_url) as db_url:
            env = {"database": db_url, "topics": topics, "prefix": prefix}
            env |= {"kafka": kafka_bootstrap, "redis": redis_url}

            def worker(index: int) -> WorkerProcess:
                return WorkerProcess(
                    "ecowatt_alarm.worker", worker_env(index, **env), f"alarm worker {index}"
                )

            first = await worker(0).start()
            workers.append(first)
            await publish(phases[0], points)
            await wait_until("minutes 0–100 handled by worker 0", all_handled, 60)
            second = await worker(1).start()
            workers.append(second)

            async def divided() -> bool:
                held = [w.held(group) for w in workers]
                return all(held) and set().union(*held) == set(range(12))  # type: ignore[arg-type]

            await wait_until("both workers hold partitions", divided, 60)
            carried = {
                w.name: {e for e in enterprises if bus_partition(e) in (w.held(group) or set())}
                for w in workers
            }
            assert all(carried.values()), f"one worker carries no enterprise: {carried}"

            await publish(phases[1], points)
            await wait_until("minutes 100–200 handled by both", all_handled, 60)
            await wait_until("every R1 opened", lambda: _true(len(r1("opened")) == 8), 30)

            await publish(phases[2], points)
            second.kill()  # while it handles minutes 200–300 of its enterprises
            await publish(phases[3], points)
            await wait_until("the rest handled by worker 0", all_handled, 90)
            assert first.held(group) == set(range(12))
            # On taking worker 1's partitions back, worker 0 read their runtimes afresh (the
            # assignment hook), so none of its writes met a newer version: no retry.
            holds = [line for line in first.lines if "alarm worker 0 holds" in line]
            assert "holds 12 partitions, 8 enterprises' runtimes" in holds[-1], holds
            conflicts = [
                line for w in workers for line in w.lines if "changed by another process" in line
            ]
            assert not conflicts, conflicts
            await wait_until("every R1 recovered", lambda: _true(len(r1("recovered")) == 8), 30)

            opened = r1("opened")
            assert {e: len(ids) for e, ids in opened.items()} == dict.fromkeys(enterprises, 1)
            database = Database(db_url, schema="alarm")
            try:
                async with database.session() as session:
                    rows = (
                        await session.execute(
                            text(
                                "SELECT enterprise_id, rule_code, subject_id, count(*) AS n,"
                                " min(first_at) AS first_at, max(recovered_at) AS recovered_at"
                                " FROM alarm.alarm GROUP BY 1, 2, 3"
                            )
                        )
                    ).mappings()
                    found: list[dict[str, Any]] = [dict(row) for row in rows]
            finally:
                await database.dispose()
            assert all(row["n"] == 1 for row in found), f"an alarm opened twice: {found}"
            r1_rows = {row["enterprise_id"]: row for row in found if row["rule_code"] == "R1"}
            assert set(r1_rows) == set(enterprises)
            for row in r1_rows.values():
                # Opened before the kill (by either worker), recovered after it on worker 0.
                assert row["first_at"] < kill_at < row["recovered_at"], row
    finally:
        for worker in workers:
            await worker.stop()
        await bus.stop()


async def test_the_service_process_starts_worker_1_and_leaves_no_orphan(
    kafka_bootstrap: str, database_url: str, redis_url: str
) -> None:
    """`python -m ecowatt_alarm` with `ECOWATT_ALARM_WORKERS=2` is worker 0 and starts worker
    1, which shares `alarm.points` with it; when the service process is SIGKILLed (no chance
    to stop its workers) worker 1 notices and stops: no orphan stays in the groups. Worker 1
    has no HTTP port, so it serves its `/metrics` on `ECOWATT_WORKER_METRICS_PORT`."""
    tag = uuid.uuid4().hex[:8]
    prefix = f"test.alarm-service.{tag}"
    topics = {name: f"{prefix}.{name}" for name in TOPICS}
    bus = KafkaBus(KafkaConnection(bootstrap_servers=kafka_bootstrap))
    await bus.start()
    try:
        await bus.ensure_topics(
            [dataclasses.replace(spec, name=topics[spec.name]) for spec in TOPICS.values()]
        )
    finally:
        await bus.stop()
    async with scratch_database(database_url) as db_url:
        env = worker_env(
            0, kafka=kafka_bootstrap, database=db_url, redis=redis_url, topics=topics, prefix=prefix
        )
        del env["ECOWATT_ALARM_WORKER_INDEX"]  # the service process, as operators start it
        metrics_port = free_port()
        env |= {
            "ECOWATT_HTTP_HOST": "127.0.0.1",
            "ECOWATT_HTTP_PORT": str(free_port()),
            "ECOWATT_WORKER_METRICS_PORT": str(metrics_port),
        }
        service = WorkerProcess(
            "ecowatt_alarm", env, "alarm service", ready="service alarm started"
        )
        await service.start()
        try:
            assert service.process is not None
            pid = service.process.pid
            workers = [c for c in children_of(pid) if "ecowatt_alarm.worker" in cmdline(c)]
            assert len(workers) == 1, f"worker 1 not started: {children_of(pid)}"

            async def shared() -> bool:
                holds = dict(HOLDS.findall("\n".join(service.lines)))
                return holds.keys() == {"0", "1"} and all(n != "12" for n in holds.values())

            await wait_until("worker 0 and worker 1 share the partitions", shared, 60)
            async with httpx.AsyncClient() as client:
                scraped = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert scraped.status_code == 200
            assert "# TYPE ecowatt_bus_consumed_total counter" in scraped.text
            assert "ecowatt_alarm_detection_seconds" in scraped.text
            service.kill()
            await wait_until(
                "worker 1 stops without its service process",
                lambda: _true(not Path(f"/proc/{workers[0]}").exists() or zombie(workers[0])),
                20,
            )
        finally:
            await service.stop()


HOLDS = re.compile(r"alarm worker (\d+) holds (\d+) partitions")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def zombie(pid: int) -> bool:
    """An exited process its (dead) parent did not reap yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def bus_partition(enterprise_id: str) -> int:
    """The partition of `telemetry.points` (12) that carries an enterprise's readings."""
    return partition_for_key(enterprise_id.encode(), TOPICS["telemetry.points"].partitions)


async def _true(value: bool) -> bool:
    return value
