"""Cross-entity rules, checked the same way for one API request and for a whole workbook.

Given the states a caller wants to write (by entity type and id), `ReferenceChecker` looks
up whatever they refer to — first among the proposed states, then in the database — and
reports each broken rule as an `Issue` with an English message (API) and a Chinese one
(Excel import).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ecowatt_kernel.identity import DataScope
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_registry.archive import (
    CONTROL_GROUP,
    DEVICE,
    ENTERPRISE,
    FACILITY,
    POINT,
    PRODUCTION_LINE,
)
from ecowatt_registry.enterprises.models import Enterprise
from ecowatt_registry.facilities.models import Facility
from ecowatt_registry.points.models import Point

_CHUNK = 5000
SIDE_ZH = {"production": "产污", "control": "治污"}
# Which facility kinds a point type may hang on.
POINT_FACILITY_KINDS: dict[str, tuple[str, ...]] = {
    "production": ("production",),
    "control": ("control",),
    "combined": ("production", "control"),
    "indirect": ("production", "control"),
    "total": (),
}


@dataclass(frozen=True)
class Issue:
    """A broken rule on one field of one proposed entity."""

    kind: str
    key: str
    field: str
    en: str
    zh: str


Proposed = dict[str, dict[str, dict[str, Any]]]
"""States to write: entity type → id → fields (complete for new entities)."""


async def _lookup(
    session: AsyncSession, table: Table, pk: str, ids: Iterable[str], columns: Sequence[str]
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    wanted = sorted({i for i in ids if i})
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = await session.execute(
            select(*(table.c[c] for c in (pk, *columns))).where(table.c[pk].in_(chunk))
        )
        for row in rows.mappings():
            found[row[pk]] = dict(row)
    return found


class ReferenceChecker:
    """Checks references, ownership, kinds, uniqueness and scope of proposed states."""

    def __init__(
        self, session: AsyncSession, proposed: Proposed, *, scope: DataScope | None = None
    ) -> None:
        self.session = session
        self.proposed = {
            name: proposed.get(name, {})
            for name in (
                ENTERPRISE.name,
                PRODUCTION_LINE.name,
                FACILITY.name,
                DEVICE.name,
                POINT.name,
                CONTROL_GROUP.name,
            )
        }
        self.scope = scope
        self.issues: list[Issue] = []

    def _issue(self, kind: str, key: str, field: str, en: str, zh: str) -> None:
        self.issues.append(Issue(kind, key, field, en, zh))

    async def check(self) -> list[Issue]:
        """Every issue of the proposed states (empty when they may be written)."""
        p = self.proposed
        enterprises = await self._effective(
            ENTERPRISE.table, "id", p["enterprise"], ("district_code", "credit_code")
        )
        lines = await self._effective(
            PRODUCTION_LINE.table,
            "id",
            p["production_line"],
            ("enterprise_id",),
            extra=(f.get("production_line_id") for f in p["facility"].values()),
        )
        facility_refs = [f.get("facility_id") for f in p["point"].values()] + [
            i
            for g in p["control_group"].values()
            for i in (*g.get("production_facility_ids", ()), *g.get("control_facility_ids", ()))
        ]
        facilities = await self._effective(
            FACILITY.table, "id", p["facility"], ("enterprise_id", "kind"), extra=facility_refs
        )
        devices = await self._effective(
            DEVICE.table,
            "mn",
            p["device"],
            ("enterprise_id",),
            extra=(pt.get("device_mn") for pt in p["point"].values()),
        )
        stored_children = {
            kind.name: await _lookup(
                self.session, kind.table, "id", p[kind.name], ("enterprise_id",)
            )
            for kind in (PRODUCTION_LINE, FACILITY, POINT, CONTROL_GROUP)
        }
        child_enterprises = {
            s.get("enterprise_id") for kind in p.values() for s in kind.values()
        } | {row["enterprise_id"] for rows in stored_children.values() for row in rows.values()}
        enterprises |= await _lookup(
            self.session,
            Enterprise.__table__,
            "id",
            (e for e in child_enterprises if e and e not in enterprises),
            ("district_code", "credit_code"),
        )
        await self._check_enterprises(enterprises)
        for kind in (PRODUCTION_LINE, FACILITY, DEVICE, POINT, CONTROL_GROUP):
            for key, state in p[kind.name].items():
                self._check_owner(
                    kind.name, key, state, enterprises, stored_children.get(kind.name)
                )
        for key, state in p["facility"].items():
            line = state.get("production_line_id")
            if line:
                owner = lines.get(line)
                if owner is None:
                    self._issue(
                        "facility",
                        key,
                        "production_line_id",
                        f"production line {line} does not exist",
                        f"生产线编号“{line}”不存在",
                    )
                elif owner["enterprise_id"] != state.get("enterprise_id"):
                    self._issue(
                        "facility",
                        key,
                        "production_line_id",
                        f"production line {line} belongs to another enterprise",
                        f"生产线“{line}”属于其他企业",
                    )
        await self._check_points(facilities, devices)
        await self._check_device_owners()
        await self._check_facility_codes()
        self._check_groups(facilities)
        return self.issues

    async def _effective(
        self,
        table: Table,
        pk: str,
        proposed: dict[str, dict[str, Any]],
        columns: Sequence[str],
        extra: Iterable[str | None] = (),
    ) -> dict[str, dict[str, Any]]:
        """Rows as they will be after the write: stored rows overlaid by proposed states."""
        wanted = set(proposed) | {e for e in extra if e}
        rows = await _lookup(self.session, table, pk, wanted, columns)
        for key, state in proposed.items():
            rows[key] = {**rows.get(key, {}), **{c: state[c] for c in columns if c in state}}
        return rows

    async def _check_enterprises(self, enterprises: dict[str, dict[str, Any]]) -> None:
        proposed = self.proposed["enterprise"]
        if self.scope is not None:
            stored = await _lookup(
                self.session,
                Enterprise.__table__,
                "id",
                proposed,
                ("district_code",),
            )
            for key, state in proposed.items():
                for district in {
                    state.get("district_code"),
                    stored.get(key, {}).get("district_code"),
                }:
                    if district and not self.scope.allows(district=district):
                        self._issue(
                            "enterprise",
                            key,
                            "district_code",
                            f"district {district} is outside your data scope",
                            f"区县“{district}”不在您的数据范围内",
                        )
        codes: dict[str, list[str]] = defaultdict(list)
        for key, state in proposed.items():
            if state.get("credit_code"):
                codes[state["credit_code"]].append(key)
        if not codes:
            return
        holders = await self.session.execute(
            select(Enterprise.id, Enterprise.credit_code).where(
                Enterprise.credit_code.in_(list(codes))
            )
        )
        for holder, code in holders.all():
            if code is None:  # never: `IN` matches no NULL (narrows the nullable column)
                continue
            if holder not in proposed or proposed[holder].get("credit_code") == code:
                codes[code].append(holder)
        for code, keys in codes.items():
            unique = sorted(set(keys))
            if len(unique) > 1:
                for key in unique:
                    if key in proposed:
                        others = ", ".join(k for k in unique if k != key)
                        self._issue(
                            "enterprise",
                            key,
                            "credit_code",
                            f"credit code {code} is also used by enterprise {others}",
                            f"统一社会信用代码“{code}”与企业“{others}”重复",
                        )

    def _check_owner(
        self,
        kind: str,
        key: str,
        state: dict[str, Any],
        enterprises: dict[str, dict[str, Any]],
        stored: dict[str, dict[str, Any]] | None,
    ) -> None:
        owner = state.get("enterprise_id")
        if owner is None:
            return
        if owner not in enterprises:
            self._issue(
                kind,
                key,
                "enterprise_id",
                f"enterprise {owner} does not exist",
                f"企业编号“{owner}”不存在",
            )
            return
        district = enterprises[owner].get("district_code")
        if self.scope is not None and not self.scope.allows(district=district, enterprise_id=owner):
            self._issue(
                kind,
                key,
                "enterprise_id",
                f"enterprise {owner} is outside your data scope",
                f"企业“{owner}”不在您的数据范围内",
            )
        if stored is not None and key in stored and stored[key]["enterprise_id"] != owner:
            self._issue(
                kind,
                key,
                "enterprise_id",
                "cannot move to another enterprise; delete and create it there",
                "不能改变所属企业，请删除后在新企业下重新创建",
            )

    async def _check_points(
        self, facilities: dict[str, dict[str, Any]], devices: dict[str, dict[str, Any]]
    ) -> None:
        points = self.proposed["point"]
        used: dict[tuple[str, int], str] = {}
        mns = sorted({s["device_mn"] for s in points.values() if s.get("device_mn")})
        for start in range(0, len(mns), _CHUNK):
            rows = await self.session.execute(
                select(Point.id, Point.device_mn, Point.circuit).where(
                    Point.device_mn.in_(mns[start : start + _CHUNK]), Point.status != "removed"
                )
            )
            for point_id, mn, circuit in rows.all():
                if mn is None:  # never: `IN` matches no NULL (narrows the nullable column)
                    continue
                if point_id not in points:
                    used[(mn, circuit)] = point_id
        for key, state in sorted(points.items()):
            enterprise = state.get("enterprise_id")
            facility_id = state.get("facility_id")
            if facility_id:
                facility = facilities.get(facility_id)
                if facility is None or "kind" not in facility:
                    self._issue(
                        "point",
                        key,
                        "facility_id",
                        f"facility {facility_id} does not exist",
                        f"设施编号“{facility_id}”不存在",
                    )
                elif facility.get("enterprise_id") != enterprise:
                    self._issue(
                        "point",
                        key,
                        "facility_id",
                        f"facility {facility_id} belongs to another enterprise",
                        f"设施“{facility_id}”属于其他企业",
                    )
                elif facility["kind"] not in POINT_FACILITY_KINDS.get(
                    state.get("point_type", ""), ()
                ):
                    self._issue(
                        "point",
                        key,
                        "facility_id",
                        f"a {state.get('point_type')} point cannot measure a "
                        f"{facility['kind']} facility",
                        "点位类型与设施类别不符",
                    )
            mn = state.get("device_mn")
            if mn:
                device = devices.get(mn)
                if device is None or "enterprise_id" not in device:
                    self._issue(
                        "point",
                        key,
                        "device_mn",
                        f"device {mn} does not exist",
                        f"数采仪 MN“{mn}”不存在",
                    )
                elif device["enterprise_id"] not in (None, enterprise):
                    self._issue(
                        "point",
                        key,
                        "device_mn",
                        f"device {mn} belongs to another enterprise",
                        f"数采仪“{mn}”属于其他企业",
                    )
                if state.get("status", "active") != "removed":
                    slot = (mn, int(state.get("circuit") or 1))
                    if slot in used:
                        self._issue(
                            "point",
                            key,
                            "circuit",
                            f"circuit {slot[1]} of device {mn} is used by point {used[slot]}",
                            f"数采仪“{mn}”的回路 {slot[1]} 已被点位“{used[slot]}”占用",
                        )
                    else:
                        used[slot] = key

    async def _check_facility_codes(self) -> None:
        """设施编号 (`code`) is unique inside an enterprise."""
        proposed = self.proposed["facility"]
        wanted: dict[tuple[str, str], list[str]] = defaultdict(list)
        for key, state in proposed.items():
            if state.get("code") and state.get("enterprise_id"):
                wanted[(state["enterprise_id"], state["code"])].append(key)
        enterprises = sorted({e for e, _ in wanted})
        for start in range(0, len(enterprises), _CHUNK):
            rows = await self.session.execute(
                select(Facility.id, Facility.enterprise_id, Facility.code).where(
                    Facility.enterprise_id.in_(enterprises[start : start + _CHUNK]),
                    Facility.code.is_not(None),
                )
            )
            for facility_id, enterprise, code in rows.all():
                if code is None:  # never: filtered by `is_not(None)` (narrows the type)
                    continue
                if (enterprise, code) in wanted and facility_id not in proposed:
                    wanted[(enterprise, code)].append(facility_id)
        for (_, code), keys in wanted.items():
            if len(keys) > 1:
                for key in keys:
                    if key in proposed:
                        others = ", ".join(k for k in keys if k != key)
                        self._issue(
                            "facility",
                            key,
                            "code",
                            f"code {code} is also used by facility {others}",
                            f"企业内设施编码“{code}”与设施“{others}”重复",
                        )

    async def _check_device_owners(self) -> None:
        """A device may change enterprise only if no point of another enterprise uses it."""
        devices = {
            mn: state["enterprise_id"]
            for mn, state in self.proposed["device"].items()
            if state.get("enterprise_id")
        }
        points = self.proposed["point"]
        mns = sorted(devices)
        for start in range(0, len(mns), _CHUNK):
            rows = await self.session.execute(
                select(Point.id, Point.device_mn, Point.enterprise_id).where(
                    Point.device_mn.in_(mns[start : start + _CHUNK])
                )
            )
            for point_id, mn, enterprise in rows.all():
                if mn is None:  # never: `IN` matches no NULL (narrows the nullable column)
                    continue
                if point_id in points:
                    enterprise = points[point_id].get("enterprise_id", enterprise)
                    if points[point_id].get("device_mn", mn) != mn:
                        continue
                if enterprise != devices[mn]:
                    self._issue(
                        "device",
                        mn,
                        "enterprise_id",
                        f"point {point_id} of enterprise {enterprise} uses this device",
                        f"数采仪仍被企业“{enterprise}”的点位“{point_id}”使用",
                    )
                    break

    def _check_groups(self, facilities: dict[str, dict[str, Any]]) -> None:
        for key, state in self.proposed["control_group"].items():
            for side in ("production", "control"):
                for facility_id in state.get(f"{side}_facility_ids", ()):
                    facility = facilities.get(facility_id)
                    field = f"{side}_facility_ids"
                    if facility is None or "kind" not in facility:
                        self._issue(
                            "control_group",
                            key,
                            field,
                            f"facility {facility_id} does not exist",
                            f"设施编号“{facility_id}”不存在",
                        )
                    elif facility.get("enterprise_id") != state.get("enterprise_id"):
                        self._issue(
                            "control_group",
                            key,
                            field,
                            f"facility {facility_id} belongs to another enterprise",
                            f"设施“{facility_id}”属于其他企业",
                        )
                    elif facility["kind"] != side:
                        self._issue(
                            "control_group",
                            key,
                            field,
                            f"facility {facility_id} is a {facility['kind']} facility",
                            f"设施“{facility_id}”不是{SIDE_ZH[side]}设施",
                        )


__all__ = ["POINT_FACILITY_KINDS", "Issue", "Proposed", "ReferenceChecker"]
