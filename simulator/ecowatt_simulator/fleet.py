"""The fleet: which devices to simulate, what they measure, and how to register them.

A fleet is built from the registry's archive — `Fleet.from_view(view, city_seed=…)` with a
`RegistryView` filled from `registry.changes`, or `Fleet.from_snapshots(...)` — or invented
with `Fleet.synthetic(devices=N, circuits=C, seed=S)`, which needs no registry and can emit
the `RegistryChange`s that register it (`fleet.registry_changes()`).

Device PWs are never on the bus (only their hashes are): devices of the synthetic city get
`ecowatt_kernel.synthetic.device_password(city_seed, mn)`, exactly what the registry's seeding
hashed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from ecowatt_kernel.contracts import (
    ControlGroupSnapshot,
    DeviceSnapshot,
    EnterpriseSnapshot,
    FacilitySnapshot,
    PointSnapshot,
    RegistryChange,
    Snapshot,
)
from ecowatt_kernel.passwords import hash_password
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.synthetic import device_password

__all__ = ["DeviceSpec", "EnterpriseSpec", "FacilitySpec", "Fleet", "GroupSpec", "PointSpec"]

PointType = Literal["total", "production", "control", "indirect", "combined"]
FacilityKind = Literal["production", "control"]

# Xi'an's county-level divisions (GB/T 2260), for synthetic enterprises.
_XIAN_DISTRICTS = (
    "610102",
    "610103",
    "610104",
    "610111",
    "610112",
    "610113",
    "610114",
    "610115",
    "610116",
    "610117",
    "610118",
    "610122",
    "610124",
)
_SYNTHETIC_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class EnterpriseSpec:
    id: str
    name: str
    district_code: str = "610113"


@dataclass(frozen=True, slots=True)
class FacilitySpec:
    id: str
    enterprise_id: str
    kind: FacilityKind
    name: str
    rated_kw: float | None = None


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A control group (产治关系): control facilities that must run with production ones."""

    id: str
    enterprise_id: str
    production_ids: tuple[str, ...]
    control_ids: tuple[str, ...]
    mode: Literal["all", "any"] = "all"
    start_lead_min: int = 5
    stop_lag_min: int = 5


@dataclass(frozen=True, slots=True)
class PointSpec:
    id: str
    enterprise_id: str
    point_type: PointType
    circuit: int
    facility_id: str | None = None
    device_mn: str | None = None
    rated_kw: float | None = None
    start_stop_kw: float | None = None
    name: str = ""
    ct_ratio: float = 1.0
    """The meter sits behind this current transformer (and `pt_ratio` voltage transformer):
    it reads the primary values divided by them, and the platform multiplies them back."""
    pt_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One data logger: its MN, PW, protocol and the points it measures (by circuit)."""

    mn: str
    password: str
    enterprise_id: str | None = None
    protocol_version: Literal["2005", "2017", "2025"] = "2017"
    crc_variant: Literal["standard", "modbus_hi_lo", "modbus_lo_hi"] = "standard"
    electricity_profile: str = "ecowatt-default"
    rtd_interval_s: int | None = None
    points: tuple[PointSpec, ...] = ()


@dataclass
class Fleet:
    """Devices to simulate plus the archive around them (enterprises, facilities, groups).

    `devices` are the ones this process simulates; `points` holds every point of their
    enterprises, so a total line can be computed from all the enterprise's facilities even
    when the shard simulates only some of its devices.
    """

    devices: dict[str, DeviceSpec]
    enterprises: dict[str, EnterpriseSpec] = field(default_factory=dict)
    facilities: dict[str, FacilitySpec] = field(default_factory=dict)
    groups: dict[str, GroupSpec] = field(default_factory=dict)
    points: dict[str, PointSpec] = field(default_factory=dict)
    city_seed: int = 0
    seed: int = 0
    """Seed of the load models and faults (defaults to the city seed)."""

    def __post_init__(self) -> None:
        for device in self.devices.values():
            for point in device.points:
                self.points.setdefault(point.id, point)
        self._by_enterprise: dict[str, list[PointSpec]] = defaultdict(list)
        self._by_facility: dict[str, list[PointSpec]] = defaultdict(list)
        for point in sorted(self.points.values(), key=lambda p: p.id):
            self._by_enterprise[point.enterprise_id].append(point)
            if point.facility_id:
                self._by_facility[point.facility_id].append(point)
        self._groups_by_enterprise: dict[str, list[GroupSpec]] = defaultdict(list)
        for group in sorted(self.groups.values(), key=lambda g: g.id):
            self._groups_by_enterprise[group.enterprise_id].append(group)

    # -------------------------------------------------------------------------- queries

    def __len__(self) -> int:
        return len(self.devices)

    def points_of_enterprise(self, enterprise_id: str) -> list[PointSpec]:
        return self._by_enterprise.get(enterprise_id, [])

    def points_of_facility(self, facility_id: str) -> list[PointSpec]:
        return self._by_facility.get(facility_id, [])

    def groups_of_enterprise(self, enterprise_id: str) -> list[GroupSpec]:
        return self._groups_by_enterprise.get(enterprise_id, [])

    def facilities_of_enterprise(self, enterprise_id: str) -> list[FacilitySpec]:
        return sorted(
            (f for f in self.facilities.values() if f.enterprise_id == enterprise_id),
            key=lambda f: f.id,
        )

    def shard(self, index: int, count: int) -> Fleet:
        """Devices `index`, `index + count`, … of the MN-sorted fleet (for `--shard i/n`)."""
        if not 0 <= index < count:
            raise ValueError(f"shard {index}/{count}: need 0 <= i < n")
        mns = sorted(self.devices)[index::count]
        return replace(self, devices={mn: self.devices[mn] for mn in mns})

    # --------------------------------------------------------------------- from registry

    @classmethod
    def from_view(
        cls,
        view: RegistryView,
        *,
        city_seed: int,
        seed: int | None = None,
        passwords: Mapping[str, str] | None = None,
        password: str | None = None,
    ) -> Fleet:
        """The active devices of a `RegistryView` (filled from `registry.changes`)."""
        snapshots: list[Snapshot] = []
        for entity in ("enterprise", "facility", "control_group", "point", "device"):
            snapshots.extend(view.all(entity))
        return cls.from_snapshots(
            snapshots, city_seed=city_seed, seed=seed, passwords=passwords, password=password
        )

    @classmethod
    def from_snapshots(
        cls,
        snapshots: Iterable[Snapshot],
        *,
        city_seed: int,
        seed: int | None = None,
        passwords: Mapping[str, str] | None = None,
        password: str | None = None,
    ) -> Fleet:
        """Build from archive snapshots.

        PWs: `passwords[mn]`, else `password` (a fleet registered with one PW, e.g. by
        `Fleet.synthetic(password=…)`), else `device_password(city_seed, mn)`.
        """
        enterprises: dict[str, EnterpriseSpec] = {}
        facilities: dict[str, FacilitySpec] = {}
        groups: dict[str, GroupSpec] = {}
        points: dict[str, PointSpec] = {}
        device_snaps: list[DeviceSnapshot] = []
        for snap in snapshots:
            if isinstance(snap, EnterpriseSnapshot):
                enterprises[snap.id] = EnterpriseSpec(snap.id, snap.name, snap.district_code)
            elif isinstance(snap, FacilitySnapshot) and snap.status != "removed":
                facilities[snap.id] = FacilitySpec(
                    snap.id, snap.enterprise_id, snap.kind, snap.name, snap.rated_kw
                )
            elif isinstance(snap, ControlGroupSnapshot):
                groups[snap.id] = GroupSpec(
                    snap.id,
                    snap.enterprise_id,
                    tuple(snap.production_facility_ids),
                    tuple(snap.control_facility_ids),
                    snap.required_mode,
                    snap.start_lead_min,
                    snap.stop_lag_min,
                )
            elif isinstance(snap, PointSnapshot) and snap.status != "removed":
                points[snap.id] = PointSpec(
                    id=snap.id,
                    enterprise_id=snap.enterprise_id,
                    point_type=snap.point_type,
                    circuit=snap.circuit,
                    facility_id=snap.facility_id,
                    device_mn=snap.device_mn,
                    rated_kw=snap.rated_kw or snap.max_load_kw,
                    start_stop_kw=snap.start_stop_kw,
                    name=snap.name,
                    ct_ratio=snap.ct_ratio,
                    pt_ratio=snap.pt_ratio,
                )
            elif isinstance(snap, DeviceSnapshot) and snap.status == "active":
                device_snaps.append(snap)
        by_device: dict[str, list[PointSpec]] = defaultdict(list)
        for point in points.values():
            if point.device_mn:
                by_device[point.device_mn].append(point)
        devices: dict[str, DeviceSpec] = {}
        for snap in sorted(device_snaps, key=lambda d: d.mn):
            pw = (passwords or {}).get(snap.mn) or password or device_password(city_seed, snap.mn)
            enterprise_id = snap.enterprise_id
            own = sorted(by_device.get(snap.mn, []), key=lambda p: (p.circuit, p.id))
            if enterprise_id is None and own:
                enterprise_id = own[0].enterprise_id
            devices[snap.mn] = DeviceSpec(
                mn=snap.mn,
                password=pw,
                enterprise_id=enterprise_id,
                protocol_version=snap.protocol_version,
                crc_variant=snap.crc_variant,
                electricity_profile=snap.electricity_profile,
                rtd_interval_s=snap.rtd_interval_s,
                points=tuple(own),
            )
        return cls(
            devices=devices,
            enterprises=enterprises,
            facilities=facilities,
            groups=groups,
            points=points,
            city_seed=city_seed,
            seed=city_seed if seed is None else seed,
        )

    # ------------------------------------------------------------------------ synthetic

    @classmethod
    def synthetic(
        cls,
        devices: int,
        *,
        circuits: int | tuple[int, int] = 4,
        seed: int = 1,
        city_seed: int | None = None,
        password: str | None = None,
        protocol_version: Literal["2005", "2017", "2025"] = "2017",
        rtd_interval_s: int = 60,
        transformers: bool = False,
    ) -> Fleet:
        """A self-contained fleet: one enterprise per device, `circuits` circuits each.

        Circuit 1 is the enterprise's total line; the other circuits are production and
        control facilities in control groups (one or two production facilities with one
        control facility, sometimes two control facilities with required mode ALL or ANY);
        a last circuit without a partner is a production facility without control.
        `circuits` may be a (min, max) range. `password` gives every device the same PW
        (one hash registers them all, for benchmarks); otherwise PWs come from
        `device_password(city_seed, mn)`. `transformers`: circuits above 40 A are metered
        through a current transformer (CT ratio in the archive, secondary values sent), as in
        the registry's synthetic city; otherwise every meter is direct (CT = PT = 1).
        """
        city = seed if city_seed is None else city_seed

        def ct_of(rated_kw: float) -> float:
            return _current_transformer(rated_kw) if transformers else 1.0

        rng = random.Random(f"ecowatt-synthetic:{seed}")
        enterprises: dict[str, EnterpriseSpec] = {}
        facilities: dict[str, FacilitySpec] = {}
        groups: dict[str, GroupSpec] = {}
        device_specs: dict[str, DeviceSpec] = {}
        for index in range(devices):
            mn = f"0100{seed & 0xFFFFF:05X}E{index:014X}"
            eid = f"sim-{seed}-e{index:06d}"
            enterprises[eid] = EnterpriseSpec(
                eid, f"模拟企业{index + 1:05d}", _XIAN_DISTRICTS[index % len(_XIAN_DISTRICTS)]
            )
            count = circuits if isinstance(circuits, int) else rng.randint(*circuits)
            if not 1 <= count <= 99:
                raise ValueError("circuits must be within 1..99")
            points: list[PointSpec] = []
            sub_points: list[PointSpec] = []
            remaining = count - 1
            circuit = 2
            gno = 0
            while remaining > 0:
                if remaining == 1:
                    n_prod, n_ctrl = 1, 0
                else:
                    n_prod = 2 if remaining >= 4 and rng.random() < 0.4 else 1
                    n_ctrl = 2 if remaining - n_prod >= 2 and rng.random() < 0.25 else 1
                prod_ids: list[str] = []
                ctrl_ids: list[str] = []
                for kind, n, ids in (
                    ("production", n_prod, prod_ids),
                    ("control", n_ctrl, ctrl_ids),
                ):
                    for _ in range(n):
                        fid = f"{eid}-f{circuit:02d}"
                        if kind == "production":
                            rated = float(rng.randrange(40, 320, 5))
                            name = f"生产设施{circuit:02d}"
                        else:
                            rated = float(rng.randrange(8, 75))
                            name = f"治理设施{circuit:02d}"
                        facilities[fid] = FacilitySpec(fid, eid, kind, name, rated)  # type: ignore[arg-type]
                        ids.append(fid)
                        point = PointSpec(
                            id=f"{eid}-p{circuit:02d}",
                            enterprise_id=eid,
                            point_type=kind,  # type: ignore[arg-type]
                            circuit=circuit,
                            facility_id=fid,
                            device_mn=mn,
                            rated_kw=rated,
                            start_stop_kw=round(rated * (0.2 if kind == "production" else 0.1), 1),
                            name=name,
                            ct_ratio=ct_of(rated),
                        )
                        sub_points.append(point)
                        circuit += 1
                remaining -= n_prod + n_ctrl
                if ctrl_ids:
                    gno += 1
                    gid = f"{eid}-g{gno}"
                    groups[gid] = GroupSpec(
                        gid,
                        eid,
                        tuple(prod_ids),
                        tuple(ctrl_ids),
                        "any" if len(ctrl_ids) > 1 and rng.random() < 0.5 else "all",
                        start_lead_min=5,
                        stop_lag_min=5,
                    )
            total_rated = sum(p.rated_kw or 0.0 for p in sub_points) * 1.25 or 50.0
            points.append(
                PointSpec(
                    id=f"{eid}-p01",
                    enterprise_id=eid,
                    point_type="total",
                    circuit=1,
                    device_mn=mn,
                    rated_kw=round(total_rated, 0),
                    start_stop_kw=round(total_rated * 0.05, 1),
                    name="企业总电",
                    ct_ratio=ct_of(round(total_rated, 0)),
                )
            )
            points.extend(sub_points)
            device_specs[mn] = DeviceSpec(
                mn=mn,
                password=password or device_password(city, mn),
                enterprise_id=eid,
                protocol_version=protocol_version,
                rtd_interval_s=rtd_interval_s,
                points=tuple(points),
            )
        return cls(
            devices=device_specs,
            enterprises=enterprises,
            facilities=facilities,
            groups=groups,
            city_seed=city,
            seed=seed,
        )

    # ------------------------------------------------------------------------ registering

    def snapshots(self, *, password_hash: str | None = None) -> list[Snapshot]:
        """Archive snapshots of the fleet, in dependency order (enterprises … devices).

        Device snapshots carry `hash_password(pw)` (computed once per distinct PW), or
        `password_hash` for every device when given.
        """
        at = _SYNTHETIC_EPOCH.isoformat()
        out: list[Snapshot] = []
        enterprise_ids = {d.enterprise_id for d in self.devices.values() if d.enterprise_id}
        for eid in sorted(enterprise_ids):
            ent = self.enterprises.get(eid) or EnterpriseSpec(eid, eid)
            out.append(
                EnterpriseSnapshot.model_validate(
                    {
                        "id": ent.id,
                        "updated_at": at,
                        "name": ent.name,
                        "district_code": ent.district_code,
                    }
                )
            )
        for fac in sorted(self.facilities.values(), key=lambda f: f.id):
            if fac.enterprise_id in enterprise_ids:
                out.append(
                    FacilitySnapshot.model_validate(
                        {
                            "id": fac.id,
                            "updated_at": at,
                            "enterprise_id": fac.enterprise_id,
                            "kind": fac.kind,
                            "name": fac.name,
                            "rated_kw": fac.rated_kw,
                        }
                    )
                )
        for group in sorted(self.groups.values(), key=lambda g: g.id):
            if group.enterprise_id in enterprise_ids:
                out.append(
                    ControlGroupSnapshot.model_validate(
                        {
                            "id": group.id,
                            "updated_at": at,
                            "enterprise_id": group.enterprise_id,
                            "production_facility_ids": group.production_ids,
                            "control_facility_ids": group.control_ids,
                            "required_mode": group.mode,
                            "start_lead_min": group.start_lead_min,
                            "stop_lag_min": group.stop_lag_min,
                        }
                    )
                )
        for point in sorted(self.points.values(), key=lambda p: p.id):
            if point.enterprise_id in enterprise_ids:
                out.append(
                    PointSnapshot.model_validate(
                        {
                            "id": point.id,
                            "updated_at": at,
                            "enterprise_id": point.enterprise_id,
                            "facility_id": point.facility_id,
                            "point_type": point.point_type,
                            "name": point.name or point.id,
                            "device_mn": point.device_mn,
                            "circuit": point.circuit,
                            "rated_kw": point.rated_kw,
                            "start_stop_kw": point.start_stop_kw,
                            "ct_ratio": point.ct_ratio,
                            "pt_ratio": point.pt_ratio,
                            "commissioned_at": at,
                            "expected_interval_s": self._interval_of(point.device_mn),
                        }
                    )
                )
        hashes: dict[str, str] = {}
        for device in sorted(self.devices.values(), key=lambda d: d.mn):
            if password_hash is not None:
                pw_hash = password_hash
            else:
                if device.password not in hashes:
                    hashes[device.password] = hash_password(device.password)
                pw_hash = hashes[device.password]
            out.append(
                DeviceSnapshot.model_validate(
                    {
                        "id": device.mn,
                        "mn": device.mn,
                        "updated_at": at,
                        "enterprise_id": device.enterprise_id,
                        "password_hash": pw_hash,
                        "protocol_version": device.protocol_version,
                        "crc_variant": device.crc_variant,
                        "electricity_profile": device.electricity_profile,
                        "rtd_interval_s": device.rtd_interval_s,
                    }
                )
            )
        return out

    def registry_changes(
        self,
        *,
        revision: int = 1,
        password_hash: str | None = None,
        actor: str = "ecowatt-simulator",
    ) -> list[RegistryChange]:
        """`RegistryChange` upserts that register the fleet (publish them on the bus)."""
        entity_of = {
            EnterpriseSnapshot: "enterprise",
            FacilitySnapshot: "facility",
            ControlGroupSnapshot: "control_group",
            PointSnapshot: "point",
            DeviceSnapshot: "device",
        }
        return [
            RegistryChange.model_validate(
                {
                    "entity": entity_of[type(snap)],
                    "entity_id": snap.id,
                    "operation": "upsert",
                    "revision": revision,
                    "changed_at": snap.updated_at,
                    "actor": actor,
                    "snapshot": snap.model_dump(mode="json"),
                }
            )
            for snap in self.snapshots(password_hash=password_hash)
        ]

    def _interval_of(self, mn: str | None) -> int:
        device = self.devices.get(mn or "")
        return (device.rtd_interval_s if device else None) or 60


def _current_transformer(rated_kw: float) -> float:
    """A plausible CT ratio for a 380 V circuit of `rated_kw`: direct metering up to 40 A,
    above that the smallest CT (5 A secondary) that keeps the meter under 4 A."""
    amps = rated_kw * 1000 / (3**0.5 * 380 * 0.85)
    if amps <= 40:
        return 1.0
    return next((r for r in (10.0, 20.0, 40.0, 80.0, 160.0) if amps <= r * 4), 320.0)
