"""`make bench-control-plan`: red-alert decomposition and the hourly compliance pass at city
scale (3,000 listed enterprises, 30,000 points), on the real PostgreSQL and Kafka.

1. A synthetic archive of N enterprises (10 points each: an incoming line, 6 production and
   3 control facilities in 3 control groups) is applied to the service's live archive view
   directly, and the synthetic reduction list (`ecowatt_control_plan.synthetic`) is written as
   one list version. Grades: 10 % A (exempt), 20 % B (limit), the rest stop at red.
2. Five normal days of hourly summaries (what the recorder keeps for baselines) are written
   by SQL for every point.
3. **Decomposition**: a red alert for the whole city is proposed and approved through the
   API; the clock runs over the approval request (orders, tasks, history, `control.tasks`
   events in the outbox, audit, commit). The relay's time to put the events on Kafka is
   reported separately.
4. The nightly baseline job (`ComplianceJudge.prepare_baselines`, 00:20 local): the day's
   profile of all 30,000 points from the five days.
5. Two hours of minute values for every point (half the enterprises stopped, half still
   running, some control facilities off) go through the recorder's write path
   (`Recorder.merge`, the consumer without Kafka decoding); its rate is reported.
6. **Compliance pass**, once per hour after each hour's data: the clock runs over
   `ComplianceJudge.run`, which judges every enterprise and measure, writes verdicts and
   statuses, and puts the `control.compliance` events and the supervision issues in the
   same transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import json
import os
import platform
import pstats
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from asgi_lifespan import LifespanManager
from ecowatt_control_plan.measures.service import apply_changes
from ecowatt_control_plan.runtime import RUNTIME_KEY
from ecowatt_control_plan.service import build_service
from ecowatt_control_plan.settings import ControlPlanSettings
from ecowatt_control_plan.synthetic.service import generate
from ecowatt_kernel.app import create_app
from ecowatt_kernel.contracts import RegistryChange
from ecowatt_kernel.db import scratch_database
from ecowatt_kernel.identity import DataScope, Identity, Role, TokenSigner, dev_key_pair
from ecowatt_simulator.fleet import _XIAN_DISTRICTS as XIAN_DISTRICTS
from infra_env import infra
from pydantic import SecretStr
from sqlalchemy import text

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 25)  # a Wednesday
DISTRICTS = XIAN_DISTRICTS


def local(hour: int, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=TZ).astimezone(UTC)


def draw(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def archive(enterprises: int) -> list[RegistryChange]:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    out: list[RegistryChange] = []

    def add(entity: str, entity_id: str, snapshot: dict[str, Any]) -> None:
        out.append(
            RegistryChange(
                entity=entity,
                entity_id=entity_id,
                operation="upsert",
                revision=1,
                changed_at=now,
                snapshot={"id": entity_id, "updated_at": now.isoformat(), **snapshot},
            )
        )

    for i in range(enterprises):
        eid = f"B{i:05d}"
        grade = "A" if draw("grade", i) < 0.1 else "B" if draw("grade", i) < 0.3 else "C"
        add(
            "enterprise",
            eid,
            {
                "name": f"基准企业{i:05d}",
                "district_code": DISTRICTS[i % 13],
                "performance_grade": grade,
                "industry_code": "3360",
                "industry_name": "金属表面处理及热处理加工",
            },
        )
        add(
            "point",
            f"{eid}-T",
            {
                "enterprise_id": eid,
                "point_type": "total",
                "name": "总电",
                "rated_kw": 1000.0,
                "device_mn": f"MN{eid}",
                "circuit": 1,
            },
        )
        circuit = 1
        for g in range(3):
            prods = [f"{eid}-P{g}{k}" for k in range(2)]
            ctrl = f"{eid}-C{g}"
            for fid, kind, rated in (
                (prods[0], "production", 100.0),
                (prods[1], "production", 100.0),
                (ctrl, "control", 30.0),
            ):
                circuit += 1
                add(
                    "facility",
                    fid,
                    {"enterprise_id": eid, "kind": kind, "name": fid, "rated_kw": rated},
                )
                add(
                    "point",
                    f"{fid}-pt",
                    {
                        "enterprise_id": eid,
                        "facility_id": fid,
                        "point_type": kind,
                        "name": fid,
                        "rated_kw": rated,
                        "device_mn": f"MN{eid}",
                        "circuit": circuit,
                        "start_stop_kw": rated * (0.2 if kind == "production" else 0.1),
                    },
                )
            add(
                "control_group",
                f"{eid}-G{g}",
                {
                    "enterprise_id": eid,
                    "production_facility_ids": prods,
                    "control_facility_ids": [ctrl],
                },
            )
    return out


HISTORY_SQL = text(
    """
INSERT INTO control_plan.point_hour
  (point_id, hour_start, enterprise_id, powers, samples, slots, expected, power_sum, run_minutes)
SELECT p.point_id, h, p.enterprise_id, NULL, 60, 60, 60,
       60 * CASE WHEN extract(hour FROM h AT TIME ZONE 'Asia/Shanghai') BETWEEN 8 AND 17
                 THEN p.level ELSE p.level * 0.02 END,
       CASE WHEN extract(hour FROM h AT TIME ZONE 'Asia/Shanghai') BETWEEN 8 AND 17
            THEN 60 ELSE 0 END
FROM unnest(CAST(:points AS text[]), CAST(:enterprises AS text[]), CAST(:levels AS float8[]))
  AS p(point_id, enterprise_id, level)
CROSS JOIN generate_series(CAST(:lo AS timestamptz), CAST(:hi AS timestamptz) - interval '1 hour',
                           interval '1 hour') AS h
"""
)


def level_of(point_id: str) -> float:
    if point_id.endswith("-T"):
        return 600.0
    return 24.0 if "-C" in point_id else 80.0


def minute_values(eid: str, point_id: str, hour: int) -> dict[int, float]:
    """Half the enterprises stopped; a tenth run with their control facilities off."""
    stopped = draw("stop", eid) < 0.5
    control_off = draw("ctrl", eid) < 0.1
    base = level_of(point_id)
    if "-C" in point_id:
        value = 0.0 if (stopped or control_off) else base
    elif point_id.endswith("-T"):
        value = 60.0 if stopped else base
    else:
        value = 1.0 if stopped else base * (0.95 + 0.1 * draw(point_id, hour))
    return dict.fromkeys(range(60), value)


async def main(enterprises: int) -> dict[str, Any]:
    result: dict[str, Any] = {"enterprises": enterprises}
    async with scratch_database(infra("DATABASE_URL"), prefix="ecowatt_bench") as db_url:
        prefix = f"bench.control.{int(time.time())}"
        settings = ControlPlanSettings(
            environment="test",
            bus_backend="kafka",
            kafka_bootstrap_servers=infra("KAFKA_BOOTSTRAP_SERVERS"),
            database_url=SecretStr(db_url),
            redis_url=SecretStr(infra("REDIS_URL")),
            control_plan_points_topic=f"{prefix}.points",
            control_plan_registry_topic=f"{prefix}.registry",
            control_plan_tasks_topic=f"{prefix}.tasks",
            control_plan_compliance_topic=f"{prefix}.compliance",
            control_plan_audit_topic=f"{prefix}.audit",
            control_plan_consumer_prefix=prefix,
            control_plan_pass_enabled=False,
            control_plan_seed_list=False,
            log_level="WARNING",
        )
        clock = {"now": local(8)}
        app = create_app(build_service(clock=lambda: clock["now"]), settings=settings)
        signer = TokenSigner(dev_key_pair()[0], issuer="ecowatt-auth", audience="ecowatt")

        def auth(subject: str) -> dict[str, str]:
            identity = Identity(
                subject=subject, roles=frozenset({Role.CITY_SUPERVISOR}), scope=DataScope(all=True)
            )
            return {"Authorization": "Bearer " + signer.sign(identity)}

        async with LifespanManager(app, startup_timeout=120, shutdown_timeout=120) as manager:
            runtime = app.state.context.state[RUNTIME_KEY]
            started = time.perf_counter()
            changes = archive(enterprises)
            runtime.view.apply_all(changes)
            await runtime.view.wait_ready(timeout_s=60)
            points = [c.snapshot for c in changes if c.entity == "point"]
            result["points"] = len(points)
            result["archive_s"] = round(time.perf_counter() - started, 1)

            started = time.perf_counter()
            async with runtime.database.transaction() as session:
                version = await apply_changes(
                    session,
                    changes=generate(view=runtime.view, seed=1),
                    view=runtime.view,
                    actor="bench",
                    reason="bench",
                    source="synthetic",
                )
                await session.execute(
                    HISTORY_SQL,
                    {
                        "points": [p["id"] for p in points],
                        "enterprises": [p["enterprise_id"] for p in points],
                        "levels": [level_of(p["id"]) for p in points],
                        "lo": local(0, DAY - timedelta(days=5)),
                        "hi": local(0),
                    },
                )
            result["list_and_history_s"] = round(time.perf_counter() - started, 1)
            result["list_version"] = version

            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://c", timeout=600
            ) as client:
                r = await client.post(
                    "/alerts",
                    json={
                        "name": "基准红色预警",
                        "level": "red",
                        "effective_at": local(9).isoformat(),
                        "expected_end": local(21).isoformat(),
                        "ramp_min": 60,
                    },
                    headers=auth("bench-1"),
                )
                assert r.status_code == 201, r.text
                order = r.json()
                started = time.perf_counter()
                r = await client.post(
                    f"/alerts/{order['id']}/changes/{order['changes'][0]['id']}/approve",
                    json={},
                    headers=auth("bench-2"),
                )
                result["decomposition_s"] = round(time.perf_counter() - started, 2)
                assert r.status_code == 200, r.text
                result["tasks"] = r.json()["tasks"]
                started = time.perf_counter()
                await runtime.relay.drain()
                result["tasks_to_kafka_s"] = round(time.perf_counter() - started, 2)

            recorder = runtime.state["recorder"]
            judge = runtime.state["judge"]
            # The nightly job: the day's baselines of every listed point, from the five days.
            started = time.perf_counter()
            result["baselines"] = await judge.prepare_baselines(day=DAY)
            result["baselines_s"] = round(time.perf_counter() - started, 1)
            for n, hour in enumerate((10, 11), start=1):
                started = time.perf_counter()
                hour_start = local(hour)
                batch: dict[tuple[str, datetime], dict[int, float]] = {}
                owners: dict[str, str] = {}
                for p in points:
                    batch[(p["id"], hour_start)] = minute_values(p["enterprise_id"], p["id"], hour)
                    owners[p["id"]] = p["enterprise_id"]
                    if len(batch) >= 2000:
                        await recorder.merge(batch, owners)
                        batch = {}
                if batch:
                    await recorder.merge(batch, owners)
                seconds = time.perf_counter() - started
                result[f"record_hour{n}_s"] = round(seconds, 1)
                result[f"record_hour{n}_values_per_s"] = round(len(points) * 60 / seconds)
                clock["now"] = hour_start + timedelta(minutes=75)
                started = time.perf_counter()
                profiler = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
                if profiler:
                    profiler.enable()
                outcome = await judge.run()
                if profiler:
                    profiler.disable()
                    pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
                result[f"pass{n}_s"] = round(time.perf_counter() - started, 1)
                result[f"pass{n}"] = outcome.model_dump(exclude={"seconds"})
    result["machine"] = {
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "date": f"{datetime.now(UTC):%Y-%m-%d}",
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--enterprises", type=int, default=3000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.enterprises)), ensure_ascii=False, indent=2))
