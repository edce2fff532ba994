"""The archive as compliance needs it: an enterprise's points by role, thresholds, rated power.

Read from the live `RegistryView`. Thresholds follow supervision.md §2.1 and the alarm
service: a point runs at or above its start/stop threshold (启停阈值); without one, 20 % of
rated power for production points and 10 % for control points (the Beijing ratios); with no
rated power either, 1 kW. Rated power: the point's, else its maximum load, else its share of
the facility's rated power.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ecowatt_kernel.contracts import ControlGroupSnapshot, FacilitySnapshot, PointSnapshot
from ecowatt_kernel.registry_view import RegistryView

DEFAULT_RATIO = {"production": 0.2, "combined": 0.2, "total": 0.2, "control": 0.1}
FALLBACK_THRESHOLD_KW = 1.0
IDLE_FLOOR_KW = 0.2
IDLE_RATIO = 0.02
"""Below max(0.2 kW, 2 % of rated) a point is stopped rather than on standby (§2.1)."""


def step_min(point: PointSnapshot) -> int:
    """Minutes per expected sample (at least 1)."""
    return max(1, round(point.expected_interval_s / 60))


def expected_slots(point: PointSnapshot) -> int:
    step = step_min(point)
    return max(1, -(-60 // step))


@dataclass
class EnterpriseArchive:
    """One enterprise's points, grouped as the rules need them."""

    enterprise_id: str
    points: dict[str, PointSnapshot] = field(default_factory=dict)
    facilities: dict[str, FacilitySnapshot] = field(default_factory=dict)
    groups: list[ControlGroupSnapshot] = field(default_factory=list)

    def production_points(self) -> list[PointSnapshot]:
        return [p for p in self.points.values() if p.point_type in ("production", "combined")]

    def total_points(self) -> list[PointSnapshot]:
        return [p for p in self.points.values() if p.point_type == "total"]

    def facility_points(self, facility_id: str) -> list[PointSnapshot]:
        return [
            p
            for p in self.points.values()
            if p.facility_id == facility_id
            and p.point_type in ("production", "control", "combined")
        ]

    def line_points(self, line_id: str) -> list[PointSnapshot]:
        out = []
        for facility in self.facilities.values():
            if facility.production_line_id == line_id and facility.kind == "production":
                out.extend(self.facility_points(facility.id))
        return out

    def target_points(self, kind: str, ids: list[str]) -> list[PointSnapshot]:
        """The points a measure's target is judged on."""
        if kind == "enterprise":
            return self.production_points() or self.total_points()
        if kind == "production_line":
            return [p for line in ids for p in self.line_points(line)]
        if kind == "facility":
            return [p for f in ids for p in self.facility_points(f)]
        return [self.points[p] for p in ids if p in self.points]

    def rated_kw(self, point: PointSnapshot) -> float | None:
        """The point's rated power (kW), or None when the archive has none."""
        if point.rated_kw:
            return point.rated_kw
        if point.max_load_kw:
            return point.max_load_kw
        facility = self.facilities.get(point.facility_id or "")
        if facility is not None and facility.rated_kw:
            return facility.rated_kw / max(1, len(self.facility_points(facility.id)))
        return None

    def run_threshold_kw(self, point: PointSnapshot) -> float:
        """At or above this power the point runs."""
        if point.start_stop_kw and point.start_stop_kw > 0:
            return point.start_stop_kw
        rated = self.rated_kw(point)
        if rated:
            return DEFAULT_RATIO.get(point.point_type, 0.2) * rated
        return FALLBACK_THRESHOLD_KW

    def idle_kw(self, point: PointSnapshot) -> float:
        """Standby allowance of a stopped point (kW)."""
        return max(IDLE_FLOOR_KW, IDLE_RATIO * (self.rated_kw(point) or 0.0))


class ArchiveIndex:
    """Every enterprise's archive, rebuilt in one sweep when the registry changed."""

    def __init__(self, view: RegistryView) -> None:
        self.view = view
        self._archives: dict[str, EnterpriseArchive] = {}
        self._point_enterprise: dict[str, str] = {}
        self._dirty = True
        view.on_change(self._changed)

    def _changed(self, *_: object) -> None:
        self._dirty = True

    def _rebuild(self) -> None:
        archives: dict[str, EnterpriseArchive] = {}

        def of(enterprise_id: str) -> EnterpriseArchive:
            found = archives.get(enterprise_id)
            if found is None:
                found = archives[enterprise_id] = EnterpriseArchive(enterprise_id)
            return found

        for point in self.view.all("point"):
            if point.status == "active":
                of(point.enterprise_id).points[point.id] = point
        for facility in self.view.all("facility"):
            if facility.status != "removed":
                of(facility.enterprise_id).facilities[facility.id] = facility
        for group in self.view.all("control_group"):
            of(group.enterprise_id).groups.append(group)
        self._archives = archives
        self._point_enterprise = {
            pid: a.enterprise_id for a in archives.values() for pid in a.points
        }
        self._dirty = False

    def enterprise(self, enterprise_id: str) -> EnterpriseArchive:
        """The enterprise's archive (empty when it has no points)."""
        if self._dirty:
            self._rebuild()
        return self._archives.get(enterprise_id) or EnterpriseArchive(enterprise_id)

    def point(self, point_id: str) -> tuple[EnterpriseArchive, PointSnapshot] | None:
        """A point with its enterprise's archive."""
        if self._dirty:
            self._rebuild()
        enterprise_id = self._point_enterprise.get(point_id)
        if enterprise_id is None:
            return None
        archive = self._archives[enterprise_id]
        return archive, archive.points[point_id]
