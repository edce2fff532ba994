"""The archive as the engine needs it: one enterprise's points, facilities and control groups.

Built from the kernel's `RegistryView` and cached per enterprise until a registry change, a
learned-load update or a rule edit invalidates it. Thresholds are resolved here (configured,
defaulted from rated/learned power, or a fallback), and each says where it came from so that
alarms can explain themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from ecowatt_kernel.contracts import (
    ControlGroupSnapshot,
    EnterpriseSnapshot,
    FacilitySnapshot,
    PointSnapshot,
    Snapshot,
)
from ecowatt_kernel.registry_view import RegistryView

from ecowatt_alarm.rules import RuleSet

__all__ = ["EnterpriseModel", "GroupModel", "Learned", "ModelCache", "PointModel", "resolve_point"]


@dataclass(frozen=True)
class Learned:
    """Nightly learned values of a point (supervision.md §2.2)."""

    rated_kw: float | None = None
    running_median_kw: float | None = None


@dataclass
class PointModel:
    id: str
    enterprise_id: str
    name: str
    facility_id: str | None
    point_type: str
    kind: str  # production | control | total | other
    is_key: bool
    device_mn: str | None
    expected_interval_s: int
    offline_after_s: float
    threshold_kw: float
    threshold_source: str  # configured | default | fallback
    threshold_basis: str
    idle_kw: float
    low_load_kw: float | None
    low_load_basis: str | None
    reference_kw: float | None
    rated_kw: float | None
    learned: Learned

    def describe_threshold(self) -> str:
        if self.threshold_source == "configured":
            return f"启停阈值 {self.threshold_kw:g} kW"
        return f"启停阈值 {self.threshold_kw:g} kW（{self.threshold_basis}）"


@dataclass
class FacilityModel:
    id: str
    kind: str
    name: str
    point_ids: list[str] = field(default_factory=list)
    key_point_ids: list[str] = field(default_factory=list)


@dataclass
class GroupModel:
    id: str
    name: str
    production_ids: tuple[str, ...]
    control_ids: tuple[str, ...]
    mode: str
    start_lead_min: int
    stop_lag_min: int


@dataclass
class EnterpriseModel:
    id: str
    name: str
    district_code: str | None
    zone: str | None
    industry_code: str | None
    points: dict[str, PointModel]
    facilities: dict[str, FacilityModel]
    groups: list[GroupModel]
    generation: int
    devices: dict[str, list[str]] = field(default_factory=dict)

    @property
    def production_point_ids(self) -> list[str]:
        return [p.id for p in self.points.values() if p.kind == "production"]

    @property
    def total_point_ids(self) -> list[str]:
        return [p.id for p in self.points.values() if p.kind == "total"]

    def facility_name(self, facility_id: str) -> str:
        f = self.facilities.get(facility_id)
        return f.name if f else facility_id


def resolve_point(
    snap: PointSnapshot, facility: FacilitySnapshot | None, learned: Learned, params: dict[str, Any]
) -> PointModel:
    """Thresholds of one point: configured, or defaulted from rated/learned power (§2.1)."""
    if snap.point_type == "total":
        kind = "total"
    elif snap.point_type in ("production", "control"):
        kind = snap.point_type
    elif snap.point_type == "combined":
        kind = facility.kind if facility is not None else "production"
    else:
        kind = "other"
    rated = snap.rated_kw or (facility.rated_kw if facility is not None else None)
    reference = rated or learned.rated_kw or snap.max_load_kw
    if snap.start_stop_kw and snap.start_stop_kw > 0:
        threshold, source, basis = snap.start_stop_kw, "configured", "已配置"
    elif reference:
        ratio = params[
            {"control": "default_control_ratio", "production": "default_production_ratio"}.get(
                kind, "default_other_ratio"
            )
        ]
        what = "额定功率" if rated else ("学习额定负荷" if learned.rated_kw else "最大负荷")
        threshold, source = ratio * reference, "default"
        basis = f"默认值：{what} {reference:g} kW 的 {ratio * 100:g}%"
    else:
        threshold, source = float(params["fallback_threshold_kw"]), "fallback"
        basis = "无额定功率，使用兜底阈值"
    idle = max(float(params["idle_min_kw"]), float(params["idle_ratio"]) * (reference or 0.0))
    idle = min(idle, 0.5 * threshold)
    low_load: float | None = None
    low_basis: str | None = None
    if kind == "control":
        if snap.low_load_kw and snap.low_load_kw > 0:
            low_load, low_basis = snap.low_load_kw, "已配置低负荷阈值"
        else:
            low_ref = learned.rated_kw or rated
            if low_ref:
                ratio = float(params["low_load_ratio"])
                low_load = ratio * low_ref
                what = "学习额定负荷" if learned.rated_kw else "额定功率"
                low_basis = f"{what} {low_ref:g} kW 的 {ratio * 100:g}%"
        if low_load is not None and low_load <= threshold:
            low_load = None  # below the start/stop threshold it could never apply
    offline_after = max(
        float(params["offline_factor"]) * snap.expected_interval_s, float(params["offline_min_s"])
    )
    total_ref = learned.running_median_kw or rated or snap.max_load_kw
    return PointModel(
        id=snap.id,
        enterprise_id=snap.enterprise_id,
        name=snap.name,
        facility_id=snap.facility_id,
        point_type=snap.point_type,
        kind=kind,
        is_key=snap.is_key,
        device_mn=snap.device_mn,
        expected_interval_s=snap.expected_interval_s,
        offline_after_s=offline_after,
        threshold_kw=threshold,
        threshold_source=source,
        threshold_basis=basis,
        idle_kw=idle,
        low_load_kw=low_load,
        low_load_basis=low_basis,
        reference_kw=total_ref if kind == "total" else reference,
        rated_kw=rated,
        learned=learned,
    )


class ModelCache:
    """EnterpriseModel per enterprise, rebuilt lazily after changes."""

    def __init__(
        self,
        view: RegistryView,
        rules: RuleSet,
        learned: Callable[[str], Learned],
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.view = view
        self.rules = rules
        self.learned = learned
        self.today = today
        self._models: dict[str, EnterpriseModel] = {}
        self._members: dict[str, dict[str, dict[str, Snapshot]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        self.generation = 0
        for entity in ("point", "facility", "control_group", "enterprise"):
            for snap in view.all(entity):
                self._index(entity, None, snap)
        view.on_change(self._on_change)

    def _on_change(self, entity: str, key: str, old: Snapshot | None, new: Snapshot | None) -> None:
        if entity in ("point", "facility", "control_group", "enterprise"):
            self._index(entity, old, new)

    def _index(self, entity: str, old: Snapshot | None, new: Snapshot | None) -> None:
        for snap in (old, new):
            if snap is None:
                continue
            enterprise = snap.id if entity == "enterprise" else getattr(snap, "enterprise_id", None)
            if enterprise is None:
                continue
            if snap is old:
                self._members[enterprise][entity].pop(snap.id, None)
            else:
                self._members[enterprise][entity][snap.id] = snap
            self._models.pop(enterprise, None)

    def invalidate(self, enterprise_id: str | None = None) -> None:
        if enterprise_id is None:
            self._models.clear()
            self.generation += 1
        else:
            self._models.pop(enterprise_id, None)

    def enterprise_ids(self) -> list[str]:
        return [e for e, m in self._members.items() if m.get("point")]

    def get(self, enterprise_id: str) -> EnterpriseModel | None:
        model = self._models.get(enterprise_id)
        if model is not None:
            return model
        members = self._members.get(enterprise_id)
        if not members or not members.get("point"):
            return None
        model = self._build(enterprise_id, members)
        self._models[enterprise_id] = model
        return model

    def _build(
        self, enterprise_id: str, members: dict[str, dict[str, Snapshot]]
    ) -> EnterpriseModel:
        params = self.rules.state
        enterprise = members.get("enterprise", {}).get(enterprise_id)
        ent = enterprise if isinstance(enterprise, EnterpriseSnapshot) else None
        facilities: dict[str, FacilityModel] = {}
        fac_snaps: dict[str, FacilitySnapshot] = {}
        for snap in members.get("facility", {}).values():
            if isinstance(snap, FacilitySnapshot) and snap.status == "active":
                fac_snaps[snap.id] = snap
                facilities[snap.id] = FacilityModel(snap.id, snap.kind, snap.name)
        points: dict[str, PointModel] = {}
        devices: dict[str, list[str]] = defaultdict(list)
        for snap in sorted(members.get("point", {}).values(), key=lambda s: s.id):
            if not isinstance(snap, PointSnapshot) or snap.status != "active":
                continue
            facility = fac_snaps.get(snap.facility_id) if snap.facility_id else None
            model = resolve_point(snap, facility, self.learned(snap.id), params)
            points[snap.id] = model
            if model.device_mn:
                devices[model.device_mn].append(model.id)
            if facility is not None:
                fm = facilities[facility.id]
                fm.point_ids.append(model.id)
                if model.is_key or facility.kind == "production":
                    fm.key_point_ids.append(model.id)
        for fm in facilities.values():
            if not fm.key_point_ids:
                fm.key_point_ids = list(fm.point_ids)
        groups = []
        today = self.today()
        for snap in members.get("control_group", {}).values():
            if not isinstance(snap, ControlGroupSnapshot):
                continue
            if (snap.valid_from and snap.valid_from > today) or (
                snap.valid_to and snap.valid_to < today
            ):
                continue
            groups.append(
                GroupModel(
                    id=snap.id,
                    name=snap.name or snap.id,
                    # Only what is metered is judged: a facility without a point is an
                    # archive finding of validation (…_facility_unmonitored), not a violation.
                    production_ids=tuple(
                        f
                        for f in snap.production_facility_ids
                        if f in facilities and facilities[f].point_ids
                    ),
                    control_ids=tuple(
                        f
                        for f in snap.control_facility_ids
                        if f in facilities and facilities[f].point_ids
                    ),
                    mode=snap.required_mode,
                    start_lead_min=snap.start_lead_min,
                    stop_lag_min=snap.stop_lag_min,
                )
            )
        groups.sort(key=lambda g: g.id)
        return EnterpriseModel(
            id=enterprise_id,
            name=ent.name if ent else enterprise_id,
            district_code=ent.district_code if ent else None,
            zone=ent.zone if ent else None,
            industry_code=ent.industry_code if ent else None,
            points=points,
            facilities=facilities,
            groups=groups,
            generation=self.generation,
            devices=dict(devices),
        )
