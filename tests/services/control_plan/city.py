"""A small test city for the control-plan tests, with what every enterprise does during the
order, and what the rules (docs/control-plans.md) must conclude — worked out here by hand.

Every enterprise has production facilities P1, P2 (one point each, rated 100 kW, start/stop
20 kW), a control facility C1 (rated 30 kW, start/stop 3 kW) guarding both (ALL), and an
incoming line T; points report every 5 minutes (expected_interval_s 300). On normal days
production runs 08:00–18:00 local at 80 kW, stands by at 1 kW otherwise; the control
facility runs with it at 24 kW; the total line reads the sum plus 10 kW. E11 has only its
incoming line.

The order (orange, issued D 09:00, effective D 10:00) is raised to red from 14:00 and lifted
at 16:00. The list gives 60 minutes to wind down, so orange measures are judged 11:00–13:00,
red ones at 15:00 — except a red measure identical to its orange one, judged on from 14:00;
KEEP_CONTROL_RUNNING holds from the start of each task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.contracts import PointReading, RegistryChange

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 18)
HISTORY_DAYS = 3
STEP = timedelta(minutes=5)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ).astimezone(UTC)


def at(hour: int, minute: int = 0) -> datetime:
    """A time on day D (local)."""
    return local(DAY, hour, minute)


Power = Callable[[str, datetime], float | None]
"""(point role: P1, P2, C1, T; time) → kW, or None for no reading."""


def normal(role: str, t: datetime) -> float:
    hour = t.astimezone(TZ).hour
    running = 8 <= hour < 18
    if role in ("P1", "P2"):
        return 80.0 if running else 1.0
    if role == "C1":
        return 24.0 if running else 0.0
    return normal("P1", t) + normal("P2", t) + normal("C1", t) + 10.0


def _hour(t: datetime) -> int:
    return t.astimezone(TZ).hour


@dataclass
class Enterprise:
    id: str
    scenario: str
    district: str
    grade: str = "C"
    total_only: bool = False
    history_days: int = HISTORY_DAYS
    orange: list[dict[str, Any]] = field(default_factory=list)
    red: list[dict[str, Any]] = field(default_factory=list)
    behaviour: Power = normal
    expected: dict[int, str] = field(default_factory=dict)
    """Local hour of D → the enterprise status the rules must give."""

    def point(self, role: str) -> str:
        return f"{self.id}-{role}"

    @property
    def roles(self) -> tuple[str, ...]:
        return ("T",) if self.total_only else ("P1", "P2", "C1", "T")


def _stop_after(hour: int, minute: int = 0) -> Power:
    """Winds down at hour:minute: production to standby, control off."""

    def power(role: str, t: datetime) -> float:
        if t >= at(hour, minute) and t < at(16):
            return {"P1": 1.0, "P2": 1.0, "C1": 0.0}.get(role, 12.0)
        return normal(role, t)

    return power


def _by_hour(levels: dict[int, dict[str, float | None]]) -> Power:
    """Per local hour of D from 10:00 to 16:00, per role; other times normal."""

    def power(role: str, t: datetime) -> float | None:
        if at(10) <= t < at(16):
            row = levels.get(_hour(t))
            if row is not None and role in row:
                return row[role]
        return normal(role, t)

    return power


STOP = {"action": "STOP", "target_kind": "enterprise"}
STOP_RED = {"action": "STOP", "target_kind": "enterprise"}


def build() -> list[Enterprise]:
    out: list[Enterprise] = []

    def add(e: Enterprise) -> None:
        out.append(e)

    # E01 stops at 10:30 (within its hour of ramp) and stays stopped: 停工 throughout.
    add(
        Enterprise(
            "CPT-E01",
            "stop_ok",
            "610113",
            orange=[STOP],
            red=[STOP_RED],
            behaviour=_stop_after(10, 30),
            expected={11: "停工", 12: "停工", 13: "停工", 14: "停工", 15: "停工"},
        )
    )
    # E02 ignores the order and produces as usual. Raised to red, its STOP is the same
    # requirement as before: it is checked on at 14:00 without a new hour to wind down.
    add(
        Enterprise(
            "CPT-E02",
            "stop_ignored",
            "610113",
            orange=[STOP],
            red=[STOP_RED],
            expected=dict.fromkeys((11, 12, 13, 14, 15), "未响应停产"),
        )
    )
    # E03: only P1 must stop. Its standby: 7.9 kW at 11 (≤ 10 % of 80 kWh: complies), 8.2 kW
    # at 12 (over), at 13 one 5-minute sample at 25 kW (1 of 12 = 8.3 % running > 5 %).
    e03 = {
        10: {"P1": 1.0},
        11: {"P1": 7.9},
        12: {"P1": 8.2},
        14: {"P1": 1.0},
        15: {"P1": 1.0},
    }

    def e03_power(role: str, t: datetime) -> float | None:
        if role == "P1" and _hour(t) == 13 and at(10) <= t < at(16):
            return 25.0 if t.astimezone(TZ).minute == 20 else 1.0
        return _by_hour(e03)(role, t)

    add(
        Enterprise(
            "CPT-E03",
            "stop_edge",
            "610112",
            orange=[{"action": "STOP", "target_kind": "facility", "target_ids": ["CPT-E03-PF1"]}],
            red=[{"action": "STOP", "target_kind": "facility", "target_ids": ["CPT-E03-PF1"]}],
            behaviour=e03_power,
            expected={
                11: "合规生产",
                12: "未响应停产",
                13: "未响应停产",
                14: "合规生产",
                15: "合规生产",
            },
        )
    )
    # E04: limit by 30 % against 160 kWh (tolerance 5 points: ≥ 25 % complies).
    add(
        Enterprise(
            "CPT-E04",
            "limit_edge",
            "610112",
            orange=[{"action": "LIMIT", "target_kind": "enterprise", "reduction_pct": 30}],
            red=[STOP_RED],
            behaviour=_by_hour(
                {
                    11: {"P1": 59.2, "P2": 59.2},  # 118.4 kW: 26 %
                    12: {"P1": 60.8, "P2": 60.8},  # 121.6 kW: 24 %
                    13: {"P1": 56.0, "P2": 56.0},  # 112 kW: 30 %
                    14: {"P1": 1.0, "P2": 1.0, "C1": 0.0},
                    15: {"P1": 1.0, "P2": 1.0, "C1": 0.0},
                }
            ),
            expected={11: "合规生产", 12: "未响应减产", 13: "合规生产", 14: "停工", 15: "停工"},
        )
    )
    # E05: P1 limited to 50 % of its rated 100 kW (+5 %: 52.5 kW).
    add(
        Enterprise(
            "CPT-E05",
            "limit_load",
            "610112",
            orange=[
                {
                    "action": "LIMIT",
                    "target_kind": "facility",
                    "target_ids": ["CPT-E05-PF1"],
                    "allowed_load_pct": 50,
                }
            ],
            red=[STOP_RED],
            behaviour=_by_hour(
                {
                    11: {"P1": 52.0},
                    12: {"P1": 53.0},
                    13: {"P1": 40.0},
                    14: {"P1": 1.0, "P2": 1.0, "C1": 0.0},
                    15: {"P1": 1.0, "P2": 1.0, "C1": 0.0},
                }
            ),
            expected={11: "合规生产", 12: "未响应减产", 13: "合规生产", 14: "停工", 15: "停工"},
        )
    )
    # E06: off-peak 11:00-12:00 and 13:00-14:00; stops in the first window, not the second.
    add(
        Enterprise(
            "CPT-E06",
            "offpeak",
            "610113",
            orange=[
                {
                    "action": "OFFPEAK",
                    "target_kind": "enterprise",
                    "windows": [
                        {"start": "11:00", "end": "12:00"},
                        {"start": "13:00", "end": "14:00"},
                    ],
                }
            ],
            red=[STOP_RED],
            behaviour=_by_hour(
                {
                    11: {"P1": 1.0, "P2": 1.0, "C1": 0.0},
                    14: {"P1": 1.0, "P2": 1.0, "C1": 0.0},
                    15: {"P1": 1.0, "P2": 1.0, "C1": 0.0},
                }
            ),
            expected={11: "停工", 12: "合规生产", 13: "未响应停产", 14: "停工", 15: "停工"},
        )
    )
    # E07: reduces properly (100 kW: 37.5 %) but switches its control facility off 11-14.
    add(
        Enterprise(
            "CPT-E07",
            "control_off",
            "610113",
            orange=[{"action": "LIMIT", "target_kind": "enterprise", "reduction_pct": 30}],
            red=[{"action": "LIMIT", "target_kind": "enterprise", "reduction_pct": 30}],
            behaviour=_by_hour(
                {
                    **{h: {"P1": 50.0, "P2": 50.0, "C1": 0.0} for h in (11, 12, 13)},
                    **{h: {"P1": 50.0, "P2": 50.0} for h in (10, 14, 15)},
                }
            ),
            expected={
                11: "未开启治污设备",
                12: "未开启治污设备",
                13: "未开启治污设备",
                14: "合规生产",
                15: "合规生产",
            },
        )
    )
    # E08: silent from 10:00 (its logger is off): nothing can be judged.
    add(
        Enterprise(
            "CPT-E08",
            "offline",
            "610112",
            orange=[STOP],
            red=[STOP_RED],
            behaviour=_by_hour(
                {h: {"P1": None, "P2": None, "C1": None, "T": None} for h in range(10, 16)}
            ),
            expected=dict.fromkeys((11, 12, 13, 14, 15), "离线/无法判定"),
        )
    )

    # E09: reduces, but sends 8 of 12 samples at 11 and 12 (67 % < 80 %), 10 of 12 at 13.
    def e09_power(role: str, t: datetime) -> float | None:
        if at(10) <= t < at(16):
            minute = t.astimezone(TZ).minute
            hour = _hour(t)
            missing = (hour in (11, 12) and minute in (5, 15, 35, 45)) or (
                hour == 13 and minute in (10, 40)
            )
            if missing:
                return None
            return {"P1": 50.0, "P2": 50.0}.get(role, normal(role, t))
        return normal(role, t)

    add(
        Enterprise(
            "CPT-E09",
            "incomplete",
            "610113",
            orange=[{"action": "LIMIT", "target_kind": "enterprise", "reduction_pct": 30}],
            red=[{"action": "LIMIT", "target_kind": "enterprise", "reduction_pct": 30}],
            behaviour=e09_power,
            expected={
                11: "离线/无法判定",
                12: "离线/无法判定",
                13: "合规生产",
                14: "合规生产",
                15: "合规生产",
            },
        )
    )
    # E10: grade A, exempt; produces as usual with its control facility: 合规生产.
    add(
        Enterprise(
            "CPT-E10",
            "exempt",
            "610112",
            grade="A",
            orange=[{"action": "EXEMPT", "target_kind": "enterprise", "exempt_reason": "绩效A级"}],
            red=[{"action": "EXEMPT", "target_kind": "enterprise", "exempt_reason": "绩效A级"}],
            expected=dict.fromkeys((11, 12, 13, 14, 15), "合规生产"),
        )
    )
    # E11: only an incoming line (production-hour baseline 194 kW): ≤ 25 % (48.5 kWh) is a
    # stop. It has no control group: in the hour before its STOP takes effect (only
    # KEEP_CONTROL_RUNNING in force) nothing is judged, so it has no status at 10:00.
    add(
        Enterprise(
            "CPT-E11",
            "total_only",
            "610113",
            total_only=True,
            orange=[STOP],
            red=[STOP_RED],
            behaviour=_by_hour(
                {
                    11: {"T": 15.0},
                    12: {"T": 40.0},
                    13: {"T": 50.0},
                    14: {"T": 15.0},
                    15: {"T": 15.0},
                }
            ),
            expected={11: "停工", 12: "停工", 13: "未响应停产", 14: "停工", 15: "停工"},
        )
    )
    # E13: a single day of history (fewer than 3 normal days): the learned fallback.
    add(
        Enterprise(
            "CPT-E13",
            "learned",
            "610112",
            history_days=1,
            orange=[{"action": "LIMIT", "target_kind": "enterprise", "reduction_pct": 30}],
            red=[{"action": "LIMIT", "target_kind": "enterprise", "reduction_pct": 30}],
            behaviour=_by_hour({h: {"P1": 50.0, "P2": 50.0} for h in range(10, 16)}),
            expected=dict.fromkeys((11, 12, 13, 14, 15), "合规生产"),
        )
    )
    # M01, M02: plain enterprises whose measures the list tests edit (no readings).
    add(Enterprise("CPT-M01", "list", "610113", history_days=0))
    add(Enterprise("CPT-M02", "list", "610112", history_days=0))
    return out


class City:
    """The test city's archive, list rows and readings."""

    def __init__(self) -> None:
        self.enterprises = build()
        self.start = at(8)

    def enterprise(self, scenario: str) -> Enterprise:
        return next(e for e in self.enterprises if e.scenario == scenario)

    def point_count(self) -> int:
        return sum(len(e.roles) for e in self.enterprises)

    def registry_changes(self) -> list[RegistryChange]:
        now = datetime(2026, 11, 1, tzinfo=UTC)
        out: list[RegistryChange] = []

        def change(entity: str, entity_id: str, snapshot: dict[str, Any]) -> None:
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

        for e in self.enterprises:
            change(
                "enterprise",
                e.id,
                {
                    "name": f"测试企业{e.id[-2:]}（{e.scenario}）",
                    "district_code": e.district,
                    "district_name": {"610113": "雁塔区", "610112": "未央区"}.get(e.district),
                    "industry_code": "3360",
                    "industry_name": "金属表面处理及热处理加工",
                    "performance_grade": e.grade,
                },
            )
            if e.total_only:
                change(
                    "point",
                    e.point("T"),
                    {
                        "enterprise_id": e.id,
                        "point_type": "total",
                        "name": "总电",
                        "rated_kw": 250.0,
                        "expected_interval_s": 300,
                        "device_mn": f"MN{e.id}",
                    },
                )
                continue
            for fid, kind in (("PF1", "production"), ("PF2", "production"), ("CF1", "control")):
                change(
                    "facility",
                    f"{e.id}-{fid}",
                    {
                        "enterprise_id": e.id,
                        "kind": kind,
                        "name": fid,
                        "rated_kw": 100.0 if kind == "production" else 30.0,
                    },
                )
            change(
                "control_group",
                f"{e.id}-G",
                {
                    "enterprise_id": e.id,
                    "production_facility_ids": [f"{e.id}-PF1", f"{e.id}-PF2"],
                    "control_facility_ids": [f"{e.id}-CF1"],
                    "required_mode": "all",
                },
            )
            for n, (role, facility, kind, rated, threshold) in enumerate(
                (
                    ("P1", "PF1", "production", 100.0, 20.0),
                    ("P2", "PF2", "production", 100.0, 20.0),
                    ("C1", "CF1", "control", 30.0, 3.0),
                    ("T", None, "total", 250.0, None),
                ),
                start=1,
            ):
                change(
                    "point",
                    e.point(role),
                    {
                        "enterprise_id": e.id,
                        "facility_id": f"{e.id}-{facility}" if facility else None,
                        "point_type": kind,
                        "name": role,
                        "device_mn": f"MN{e.id}",
                        "circuit": n,
                        "rated_kw": rated,
                        "start_stop_kw": threshold,
                        "expected_interval_s": 300,
                    },
                )
        return out

    def readings(
        self, start: datetime, end: datetime, *, enterprises: list[Enterprise] | None = None
    ) -> Iterator[PointReading]:
        for e in enterprises or self.enterprises:
            if e.scenario == "list":
                continue
            first = max(start, local(DAY - timedelta(days=e.history_days), 0))
            t = first
            while t < end:
                for role in e.roles:
                    power = e.behaviour(role, t) if t >= local(DAY, 0) else normal(role, t)
                    if power is None:
                        continue
                    yield reading(e.id, e.point(role), t, power)
                t += STEP


def reading(enterprise_id: str, point_id: str, t: datetime, power: float) -> PointReading:
    return PointReading(
        enterprise_id=enterprise_id,
        point_id=point_id,
        mn=f"MN{enterprise_id}",
        cn="2011",
        interval="realtime",
        data_time=t,
        values={"active_power_kw": power},
        source_key=f"{point_id}|{t.isoformat()}",
    )
