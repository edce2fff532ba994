"""The small city of the reporting tests, and builders of the events they publish.

Two districts of the hand-computed statistics (雁塔区 610113, 长安区 610116) and a third one
(610199) for the history tests, which the statistics tests filter out:

| enterprise | district | industry | grade | points (type, expected interval)            |
|------------|----------|----------|-------|---------------------------------------------|
| E1         | 610113   | 3360     | B     | T1 total, P1 production, C1 control (3600 s) |
| E2         | 610113   | 3360     | C     | T2 total, P2 production (3600 s)             |
| E3         | 610116   | 2614     | A     | P3 production, C3 control (3600 s)           |
| E9         | 610199   | 3130     | none  | X1 production, X2 control (60 s)             |

E1's control group G1 pairs production facility F1P with control facility F1C.
Times are built from local dates (Asia/Shanghai) relative to today, so the data always sit
inside the raw retention.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.contracts import (
    AlarmChanged,
    ComplianceVerdict,
    ControlGroupSnapshot,
    EnterpriseSnapshot,
    FacilitySnapshot,
    FacilityStateChanged,
    PointReading,
    PointSnapshot,
    QualityFindingChanged,
    RegistryChange,
    Snapshot,
)

TZ = ZoneInfo("Asia/Shanghai")
CHANGED = datetime(2026, 1, 1, tzinfo=UTC)
ENTITY = {
    EnterpriseSnapshot: "enterprise",
    FacilitySnapshot: "facility",
    PointSnapshot: "point",
    ControlGroupSnapshot: "control_group",
}
CITY_DISTRICTS = ["610113", "610116"]
METAL = "金属表面处理及热处理加工"


def today() -> date:
    return datetime.now(UTC).astimezone(TZ).date()


def local(day: date, hour: int = 0, minute: int = 0) -> datetime:
    """UTC time of a local wall-clock time."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ).astimezone(UTC)


class SmallCity:
    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        t = self.tag
        self.enterprises = [
            EnterpriseSnapshot(
                id=f"E1-{t}", updated_at=CHANGED, name="甲涂装有限公司", district_code="610113",
                district_name="雁塔区", industry_code="3360", industry_name=METAL,
                performance_grade="B", zone="曲江",
            ),
            EnterpriseSnapshot(
                id=f"E2-{t}", updated_at=CHANGED, name="乙电镀有限公司", district_code="610113",
                district_name="雁塔区", industry_code="3360", industry_name=METAL,
                performance_grade="C",
            ),
            EnterpriseSnapshot(
                id=f"E3-{t}", updated_at=CHANGED, name="丙化工有限公司", district_code="610116",
                district_name="长安区", industry_code="2614", industry_name="有机化学原料制造",
                performance_grade="A",
            ),
            EnterpriseSnapshot(
                id=f"E9-{t}", updated_at=CHANGED, name="测试水泥有限公司", district_code="610199",
                district_name="测试区", industry_code="3011", industry_name="水泥制造",
            ),
        ]  # fmt: skip
        self.facilities = [
            FacilitySnapshot(id=f"F1P-{t}", updated_at=CHANGED, enterprise_id=f"E1-{t}",
                             kind="production", name="1#喷涂线"),
            FacilitySnapshot(id=f"F1C-{t}", updated_at=CHANGED, enterprise_id=f"E1-{t}",
                             kind="control", name="1#活性炭吸附"),
            FacilitySnapshot(id=f"F9P-{t}", updated_at=CHANGED, enterprise_id=f"E9-{t}",
                             kind="production", name="粉磨机"),
            FacilitySnapshot(id=f"F9C-{t}", updated_at=CHANGED, enterprise_id=f"E9-{t}",
                             kind="control", name="布袋除尘器"),
        ]  # fmt: skip
        self.groups = [
            ControlGroupSnapshot(
                id=f"G1-{t}", updated_at=CHANGED, enterprise_id=f"E1-{t}", name="喷涂线产治组",
                production_facility_ids=(f"F1P-{t}",), control_facility_ids=(f"F1C-{t}",),
            ),
            ControlGroupSnapshot(
                id=f"G9-{t}", updated_at=CHANGED, enterprise_id=f"E9-{t}", name="粉磨产治组",
                production_facility_ids=(f"F9P-{t}",), control_facility_ids=(f"F9C-{t}",),
            ),
        ]  # fmt: skip
        spec = [
            ("T1", "E1", None, "total", 3600),
            ("P1", "E1", "F1P", "production", 3600),
            ("C1", "E1", "F1C", "control", 3600),
            ("T2", "E2", None, "total", 3600),
            ("P2", "E2", None, "production", 3600),
            ("P3", "E3", None, "production", 3600),
            ("C3", "E3", None, "control", 3600),
            ("X1", "E9", "F9P", "production", 60),
            ("X2", "E9", "F9C", "control", 60),
        ]
        self.points = [
            PointSnapshot(
                id=f"{p}-{t}", updated_at=CHANGED, enterprise_id=f"{e}-{t}",
                facility_id=f"{f}-{t}" if f else None, point_type=kind, name=f"{p} 点位",
                expected_interval_s=interval, rated_kw=50.0, device_mn=f"MN{p}{t}",
                commissioned_at=CHANGED,
            )
            for p, e, f, kind, interval in spec
        ]  # fmt: skip

    def e(self, short: str) -> str:
        return f"{short}-{self.tag}"

    def registry_changes(self) -> list[RegistryChange]:
        snapshots: list[Snapshot] = [
            *self.enterprises,
            *self.facilities,
            *self.groups,
            *self.points,
        ]
        return [
            RegistryChange(
                entity=ENTITY[type(s)],
                entity_id=s.id,
                operation="upsert",
                revision=1,
                changed_at=CHANGED,
                snapshot=s.model_dump(mode="json"),
            )
            for s in snapshots
        ]

    def enterprise_of(self, point: str) -> str:
        return next(p.enterprise_id for p in self.points if p.id == self.e(point))

    # ----------------------------------------------------------------------- builders

    def reading(
        self,
        point: str,
        at: datetime,
        *,
        power: float | None = None,
        energy: float | None = None,
        valid: bool = True,
        interval: str = "realtime",
        **values: float,
    ) -> PointReading:
        data = dict(values)
        if power is not None:
            data["active_power_kw"] = power
        if energy is not None:
            data["energy_delta_kwh"] = energy
        return PointReading(
            enterprise_id=self.enterprise_of(point),
            point_id=self.e(point),
            mn=f"MN{point}{self.tag}",
            cn="2011" if interval == "realtime" else "2051",
            interval=interval,  # type: ignore[arg-type]
            data_time=at,
            values=data,
            quality={} if valid else {"active_power_kw": ["flag:D"]},
            valid=valid,
        )

    def alarm(
        self,
        alarm_id: str,
        enterprise: str,
        rule: str,
        opened: datetime,
        *,
        level: int = 1,
        status: str = "open",
        change: str = "opened",
        changed_at: datetime | None = None,
        suppressed: bool = False,
    ) -> AlarmChanged:
        names = {"R1": "产污运行治污未运行", "R2": "治污延迟开启", "R3": "治污提前关闭",
                 "R5": "治污低负荷"}  # fmt: skip
        return AlarmChanged(
            alarm_id=f"{alarm_id}-{self.tag}",
            enterprise_id=self.e(enterprise),
            rule_code=rule,
            rule_version=1,
            rule_name=names.get(rule),
            subject_id=f"G-{enterprise}",
            subject_kind="group",
            change=change,  # type: ignore[arg-type]
            status="suppressed" if suppressed else status,
            level=level,
            opened_at=opened,
            first_at=opened - timedelta(minutes=30),
            last_at=changed_at or opened,
            changed_at=changed_at or opened,
            suppressed_by={"kind": "power_loss"} if suppressed else None,
            active=True,
        )

    def finding(
        self, finding_id: str, enterprise: str, rule: str, opened: datetime, status: str,
        changed: datetime,
    ) -> QualityFindingChanged:  # fmt: skip
        return QualityFindingChanged(
            finding_id=f"{finding_id}-{self.tag}",
            enterprise_id=self.e(enterprise),
            rule_code=rule,
            rule_version=1,
            status=status,  # type: ignore[arg-type]
            subject_kind="enterprise",
            subject_id=self.e(enterprise),
            opened_at=opened,
            changed_at=changed,
        )

    def state(
        self, subject: str, state: str, since: datetime, kind: str = "facility"
    ) -> FacilityStateChanged:
        enterprise = next(
            (f.enterprise_id for f in self.facilities if f.id == self.e(subject)), None
        ) or self.enterprise_of(subject)
        return FacilityStateChanged(
            enterprise_id=enterprise,
            subject_kind=kind,  # type: ignore[arg-type]
            subject_id=self.e(subject),
            state=state,  # type: ignore[arg-type]
            since=since,
        )

    def verdict(
        self, enterprise: str, hour: datetime, verdict: str, task: str = "T"
    ) -> ComplianceVerdict:
        return ComplianceVerdict(
            enterprise_id=self.e(enterprise),
            task_id=f"{task}-{self.tag}",
            target_id="line",
            hour_start=hour,
            verdict=verdict,  # type: ignore[arg-type]
            evidence={"note": "test"},
        )


def as_dict(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json")  # type: ignore[no-any-return]
