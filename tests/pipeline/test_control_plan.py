"""A simulated city under an orange alert, through simulator → ingest → validation → alarm →
control-plan on the real broker and database (issue 12).

24 synthetic enterprises report the order day D from 07:00 to 17:30 through the pipeline.
Their five days before (the baseline: Friday to Tuesday, so that the median of each hour is
a working day's even for day-shift plants and a continuous plant's weekly maintenance stop)
are recorded straight from the simulator's load model into the control-plan's own store with
its consumer's `Recorder.merge`: the same minute values its consumer would keep, without
spending six times the run on data only the baseline reads. The reduction list (imported as
a workbook) stops, limits or shifts their production; at D 08:00 the city proposes an orange
alert effective 09:00 to 17:00 and a second supervisor approves it. The simulator reads the
tasks from `control.tasks` and each enterprise responds as drawn: comply, partly comply,
ignore, comply but switch its control facilities off, or go offline
(`ecowatt_simulator.orders`). After the run the compliance pass judges every hour.

Checked: per enterprise status, the platform's hourly status against the simulator's truth
(`OrderBook.hour_truth`) with precision and recall ≥ 0.95 for every status (hours whose truth
sits in a tolerance band are left out and counted); no R1 alarm for production that was
ordered to stop (suppressed while the order lasts where it ran without its control
facilities), while R1 stays live where production ordered to limit runs without them.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_control_plan.service import build_service
from ecowatt_control_plan.settings import ControlPlanSettings
from ecowatt_kernel.app import create_app
from ecowatt_kernel.db import scratch_database
from ecowatt_kernel.identity import Role
from ecowatt_simulator import FaultConfig, Fleet, LoadModel, ManualClock, OrderConfig, Simulator
from openpyxl import Workbook
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).parent))

from pipeline_harness import Pipeline, PipelineOptions, local_midnight

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 18)  # the order day, a Wednesday; the day before is the baseline
SEED = 11
ORDERS = OrderConfig(
    shares={"partial": 0.15, "ignore": 0.15, "control_off": 0.1, "offline": 0.1},
    # Drawn for the rest; these make sure that stopped and limited production both meet an
    # enterprise that switches its control facilities off (list_workbook: index % 4 == 0
    # stops, == 1 limits).
    behaviours={f"sim-{SEED}-e000000": "control_off", f"sim-{SEED}-e000001": "control_off"},
    seed=3,
)
STATUSES = ("合规生产", "停工", "未响应停产", "未响应减产", "未开启治污设备", "离线/无法判定")


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=TZ).astimezone(UTC)


def list_workbook(fleet: Fleet) -> bytes:
    """The orange sheet: by enterprise, STOP / LIMIT 30 % / STOP one line and limit the
    rest / off-peak 11-13 and 14-16; the last enterprise is exempt. 60 minutes to wind down."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "橙色预警"
    sheet.append(
        [
            "企业编号",
            "对象类型",
            "对象编号",
            "措施",
            "减排比例(%)",
            "错峰时段",
            "退出时间(分钟)",
            "豁免理由",
        ]
    )
    enterprises = sorted(fleet.enterprises)
    for index, eid in enumerate(enterprises):
        production = [f.id for f in fleet.facilities_of_enterprise(eid) if f.kind == "production"]
        if index == len(enterprises) - 1:
            sheet.append([eid, "企业", None, "豁免", None, None, 60, "绩效A级"])
        elif index % 4 == 0 or (index % 4 == 2 and len(production) < 2):
            sheet.append([eid, "企业", None, "停产", None, None, 60, None])
        elif index % 4 == 1:
            sheet.append([eid, "企业", None, "限产", 30, None, 60, None])
        elif index % 4 == 2:
            sheet.append([eid, "设施", production[0], "停产", None, None, 60, None])
            sheet.append([eid, "设施", "、".join(production[1:]), "限产", 30, None, 60, None])
        else:
            sheet.append(
                [eid, "企业", None, "错峰生产", None, "11:00-13:00、14:00-16:00", 60, None]
            )
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


class ControlPlanPipeline(Pipeline):
    """The pipeline of `pipeline_harness` plus the control-plan service (real app, Kafka,
    PostgreSQL), and a simulator whose enterprises respond to the orders; simulated time
    runs from D 07:00 to 17:30."""

    def __init__(self, options: PipelineOptions, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.clock = ManualClock(at(7))
        self.end = at(17, 30)
        self.after = (self.end + timedelta(minutes=10)).timestamp()

    async def _start(self) -> None:
        for name in ("compliance", "plan-audit"):
            self.topics[name] = f"{self.prefix}.{name}"
        await super()._start()
        self.plan_now = self.clock.start
        settings = ControlPlanSettings(
            environment="test",
            bus_backend="kafka",
            kafka_bootstrap_servers=self.bootstrap,
            database_url=SecretStr(self.database_url),
            redis_url=SecretStr(self.redis_url),
            control_plan_points_topic=self.topics["points"],
            control_plan_registry_topic=self.topics["registry"],
            control_plan_tasks_topic=self.topics["tasks"],
            control_plan_compliance_topic=self.topics["compliance"],
            control_plan_audit_topic=self.topics["plan-audit"],
            control_plan_consumer_prefix=f"{self.prefix}.control-plan",
            control_plan_pass_enabled=False,
            control_plan_outbox_poll_s=0.2,
            control_plan_seed_list=False,
            log_level="WARNING",
        )
        self.plan_settings = settings
        app = create_app(
            build_service(clock=lambda: datetime.fromtimestamp(self.plan_now, UTC)),
            settings=settings,
        )
        manager = await self.stack.enter_async_context(
            LifespanManager(app, startup_timeout=120, shutdown_timeout=60)
        )
        self.plan_ctx = app.state.context
        self.plan_api = await self.stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app), base_url="http://control-plan"
            )
        )
        view = self.plan_ctx.state["runtime"].view
        enterprises = set(self.fleet.enterprises)
        deadline = time.monotonic() + 60
        while not all(view.enterprise(e) for e in enterprises):
            assert time.monotonic() < deadline, "the control-plan's archive"
            await asyncio.sleep(0.05)

    def simulator(self) -> Simulator:
        if self.sim is None:
            super().simulator()
            assert self.sim is not None
            # The same devices, responding to orders (a fresh simulator, not yet started).
            base = self.sim
            self.sim = Simulator(
                base.fleet,
                port=base.port,
                faults=base.faults,
                clock=self.clock,
                settings=base.settings,
                orders=ORDERS,
            )
        return self.sim


@dataclass
class Run:
    fleet: Fleet
    sim: Simulator
    alert_id: str
    listed: set[str]
    statuses: dict[tuple[str, float], str]
    truth: dict[tuple[str, float], Any]
    alarms: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]
    timings: dict[str, float]


@pytest.fixture(scope="module")
async def plan_database(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url, prefix="ecowatt_plan") as url:
        yield url


@pytest.fixture(scope="module")
async def orange_run(kafka_bootstrap: str, redis_url: str, plan_database: str) -> Run:
    options = PipelineOptions(day=DAY, enterprises=24, seed=SEED, faults=FaultConfig())
    timings: dict[str, float] = {}
    async with ControlPlanPipeline(
        options, kafka_bootstrap=kafka_bootstrap, database_url=plan_database, redis_url=redis_url
    ) as p:
        city = p.signer.headers(Role.CITY_SUPERVISOR)
        r = await p.plan_api.post(
            "/measures/import",
            files={"file": ("list.xlsx", list_workbook(p.fleet), "application/octet-stream")},
            headers=city,
        )
        assert r.status_code == 200, r.text
        sim = p.simulator()
        assert sim.orders is not None
        wall = time.perf_counter()
        await _record_baseline_days(p, sim)
        timings["baseline_days_s"] = time.perf_counter() - wall
        follower = await sim.orders.follow(
            p.bus, p.topics["tasks"], group=f"{p.prefix}.sim-orders.{uuid.uuid4().hex[:6]}"
        )
        wall = time.perf_counter()
        end = p.end.timestamp()
        task = asyncio.create_task(sim.run(end - p.clock.start, drain_timeout=30))
        try:
            t = p.clock.start
            issue_at = at(8).timestamp()
            issued = False
            while t < end:
                t = min(t + options.step_s, end)
                await sim.advance(t, timeout_s=120)
                if not issued and t >= issue_at:
                    issued = True
                    p.plan_now = t
                    alert_id, listed = await _launch(p)
                    await asyncio.wait_for(_tasks_arrived(sim, listed), 60)
            assert await task, f"unanswered uploads: {sim.log.unacked()}"
        finally:
            if not task.done():
                task.cancel()
            await follower.stop()
        timings["simulate_s"] = time.perf_counter() - wall
        wall = time.perf_counter()
        await p._caught_up(f"{p.prefix}.validation.bind", p.topics["readings"])
        await p._caught_up(f"{p.prefix}.alarm.points", p.topics["points"])
        await p._caught_up(f"{p.prefix}.control-plan.points", p.topics["points"])
        timings["catch_up_s"] = time.perf_counter() - wall
        wall = time.perf_counter()
        p.plan_now = at(17, 30).timestamp()
        r = await p.plan_api.post("/compliance/run", headers=p.signer.headers(Role.OM_OPERATOR))
        assert r.status_code == 200, r.text
        timings["compliance_pass_s"] = time.perf_counter() - wall
        statuses = await _statuses(p, alert_id)
        alarms = await _alarms(p)
        tasks = await _all(p.plan_api, "/tasks", {"alert_id": alert_id}, city)
        verdicts = await _all(
            p.plan_api, "/compliance/verdicts", {"alert_id": alert_id, "final": "true"}, city
        )
        counterfactual = LoadModel(sim.fleet, seed=sim.seed, local=sim.local, faults=sim.plan)
        thresholds = {
            point.facility_id: point.start_stop_kw
            for point in sim.fleet.points.values()
            if point.facility_id and point.start_stop_kw
        }
        truth = {}
        for enterprise_id in listed:
            hour = at(9).timestamp()
            while hour < at(17).timestamp():
                found = sim.orders.hour_truth(
                    enterprise_id,
                    hour,
                    actual=sim.model,
                    counterfactual=counterfactual,
                    thresholds=thresholds,
                )
                if found is not None:
                    truth[(enterprise_id, hour)] = found
                hour += 3600
        print(f"\ncontrol-plan pipeline: {timings} {p.timings}")
        return Run(
            sim.fleet, sim, alert_id, listed, statuses, truth, alarms, tasks, verdicts, timings
        )


async def _record_baseline_days(p: ControlPlanPipeline, sim: Simulator, days: int = 5) -> None:
    """The days before D, minute by minute from the load model (primary kW, as validation
    publishes them), through the control-plan's own recorder."""
    recorder = p.plan_ctx.state["runtime"].recorder
    start = local_midnight(DAY - timedelta(days=days)).timestamp()
    points = [pt for pt in sim.fleet.points.values() if pt.device_mn in sim.fleet.devices]
    for hour in range(24 * days):
        minutes: dict[tuple[str, datetime], dict[int, float]] = {}
        owners: dict[str, str] = {}
        base = start + 3600 * hour
        for point in points:
            values = {m: sim.model.primary_sample(point, base + 60 * m).power for m in range(60)}
            minutes[(point.id, datetime.fromtimestamp(base, UTC))] = values
            owners[point.id] = point.enterprise_id
        await recorder.merge(minutes, owners)


async def _launch(p: ControlPlanPipeline) -> tuple[str, set[str]]:
    proposer = p.signer.headers(Role.CITY_SUPERVISOR)
    r = await p.plan_api.post(
        "/alerts",
        json={
            "name": "西安市重污染天气橙色预警",
            "level": "orange",
            "effective_at": at(9).isoformat(),
            "expected_end": at(17).isoformat(),
        },
        headers=proposer,
    )
    assert r.status_code == 201, r.text
    order = r.json()
    approver = p.signer.headers(Role.ADMIN)  # another person: the admin test identity
    r = await p.plan_api.post(
        f"/alerts/{order['id']}/changes/{order['changes'][0]['id']}/approve",
        json={"note": "同意启动"},
        headers=approver,
    )
    assert r.status_code == 200, r.text
    assert r.json()["tasks"]["issued"] == len(p.fleet.enterprises)
    await p.plan_ctx.state["runtime"].relay.drain()
    return order["id"], set(p.fleet.enterprises)


async def _tasks_arrived(sim: Simulator, listed: set[str]) -> None:
    assert sim.orders is not None
    while True:
        sim.orders.changed.clear()
        if listed <= set(sim.orders.tasks):
            return
        await sim.orders.changed.wait()


async def _all(
    client: httpx.AsyncClient, path: str, params: dict[str, Any], headers: dict[str, str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        r = await client.get(
            path, params={**params, "page": page, "page_size": 500}, headers=headers
        )
        assert r.status_code == 200, r.text
        out += r.json()["items"]
        body = r.json()
        if page * 500 >= body["total"]:
            return out
        page += 1


async def _statuses(p: ControlPlanPipeline, alert_id: str) -> dict[tuple[str, float], str]:
    rows = await _all(
        p.plan_api,
        "/compliance/hours",
        {"alert_id": alert_id},
        p.signer.headers(Role.CITY_SUPERVISOR),
    )
    return {
        (r["enterprise_id"], datetime.fromisoformat(r["hour_start"]).timestamp()): r["status"]
        for r in rows
        if not r["provisional"]
    }


async def _alarms(p: ControlPlanPipeline) -> list[dict[str, Any]]:
    alarms = await _all(p.alarm_api, "/alarms", {}, p.signer.headers(Role.CITY_SUPERVISOR))
    for a in alarms:
        for k in ("first_at", "last_at"):
            if a.get(k):
                a[k] = datetime.fromisoformat(a[k])
    return alarms


def test_every_behaviour_and_status_occurs(orange_run: Run) -> None:
    assert orange_run.sim.orders is not None
    behaviours = Counter(orange_run.sim.orders.behaviours().values())
    assert set(behaviours) == {"comply", "partial", "ignore", "control_off", "offline"}
    scored = Counter(t.status for t in orange_run.truth.values() if not t.ambiguous)
    assert set(scored) == set(STATUSES), scored
    assert len(orange_run.tasks) == len(orange_run.listed)


def test_statuses_match_the_simulators_truth(orange_run: Run) -> None:
    run = orange_run
    pairs = [
        (t.status, run.statuses.get(key, "—")) for key, t in run.truth.items() if not t.ambiguous
    ]
    ambiguous = sum(1 for t in run.truth.values() if t.ambiguous)
    confusion = Counter(pairs)
    lines = []
    for status in STATUSES:
        tp = confusion[(status, status)]
        said = sum(n for (_, got), n in confusion.items() if got == status)
        real = sum(n for (want, _), n in confusion.items() if want == status)
        precision = tp / said if said else 1.0
        recall = tp / real if real else 1.0
        lines.append((status, real, said, round(precision, 3), round(recall, 3)))
    print(f"\n{len(pairs)} enterprise-hours scored, {ambiguous} ambiguous left out")
    for line in lines:
        print("  status {:<8} truth {:>3} platform {:>3} precision {} recall {}".format(*line))
    wrong = [
        (
            key[0],
            datetime.fromtimestamp(key[1], TZ).strftime("%H:%M"),
            t.behaviour,
            t.status,
            run.statuses.get(key),
            t.detail,
            [
                (v["action"], v["verdict"], v["reason"])
                for v in run.verdicts
                if v["enterprise_id"] == key[0]
                and datetime.fromisoformat(v["hour_start"]).timestamp() == key[1]
            ],
        )
        for key, t in run.truth.items()
        if not t.ambiguous and run.statuses.get(key) != t.status
    ]
    for w in wrong:
        print("  wrong:", w)
    assert all(p >= 0.95 and r >= 0.95 for _, _, _, p, r in lines), (lines, wrong)


def test_no_live_r1_for_production_ordered_to_stop(orange_run: Run) -> None:
    run = orange_run
    assert run.sim.orders is not None
    start, end = at(9), at(17)
    stopped: dict[str, set[str]] = defaultdict(set)  # enterprise → facilities ordered to stop
    limited: dict[str, set[str]] = defaultdict(set)
    for task in run.tasks:
        for m in task["measures"]:
            facilities = (
                set(m["target_ids"])
                if m["target_kind"] == "facility"
                else {
                    f.id
                    for f in run.fleet.facilities_of_enterprise(task["enterprise_id"])
                    if f.kind == "production"
                }
            )
            if m["action"] == "STOP":
                stopped[task["enterprise_id"]] |= facilities
            elif m["action"] == "LIMIT":
                limited[task["enterprise_id"]] |= facilities
    r1 = [a for a in run.alarms if a["rule_code"] == "R1" and start <= a["first_at"] < end]

    def production_of(alarm: dict[str, Any]) -> set[str]:
        group = run.fleet.groups.get(alarm["group_id"] or "")
        return set(group.production_ids) if group else set()

    behaviours = run.sim.orders.behaviours()
    ordered = [a for a in r1 if production_of(a) & stopped[a["enterprise_id"]]]
    # Production ordered to stop raises no R1 — whether it stopped (its control facilities
    # then stop after it), half stopped or ignored the order with its control running.
    quiet = [a for a in ordered if behaviours[a["enterprise_id"]] != "control_off"]
    assert quiet == [], [(a["enterprise_id"], a["first_at"], a["status"]) for a in quiet]
    # Ordered to stop but running without its control facilities: R1 is recorded, and
    # suppressed by the stop order for as long as the order lasts (an R1 still holding when
    # the order ends opens then: alarm's rule for suppressions that end).
    defiant = [a for a in ordered if behaviours[a["enterprise_id"]] == "control_off"]
    assert defiant and all(a["suppressed_by"]["kind"] == "control_plan" for a in defiant)
    assert all(a["status"] == "suppressed" or a["last_at"] >= end for a in defiant), [
        (a["first_at"], a["last_at"], a["status"]) for a in defiant
    ]
    # Control facilities must keep running: production limited, not stopped, runs without
    # its control facility (behaviour control_off) → R1 stays live.
    limited_off = {e for e in limited if behaviours[e] == "control_off" and not stopped[e]}
    insisted = {
        a["enterprise_id"]
        for a in r1
        if a["status"] != "suppressed" and a["enterprise_id"] in limited_off
    }
    assert limited_off and insisted == limited_off, (limited_off, insisted)
