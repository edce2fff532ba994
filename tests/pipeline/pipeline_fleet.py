"""The pipeline's fleet: the simulator's synthetic city, half of its enterprises measuring
their control facilities on a second logger, registered with what the archive checks want."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from ecowatt_kernel.contracts import RegistryChange
from ecowatt_simulator import DeviceSpec, Fleet, PointSpec
from ecowatt_validation.reference import credit_check_char

__all__ = ["PASSWORD", "TZ", "local_midnight", "point_of", "registry_changes", "split_fleet"]

TZ = ZoneInfo("Asia/Shanghai")
PASSWORD = "654321"  # one PW for the fleet: one scrypt hash registers every device


def local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC)


def split_fleet(fleet: Fleet, every: int = 2) -> Fleet:
    """Every `every`-th enterprise measures its control facilities on a second logger.

    Device B's MN is device A's with `E` turned into `F`; its circuits are renumbered from 1.
    """
    devices: dict[str, DeviceSpec] = {}
    for index, (mn, device) in enumerate(sorted(fleet.devices.items())):
        controls = [p for p in device.points if p.point_type == "control"]
        if index % every or not controls:
            devices[mn] = device
            continue
        b_mn = mn[:9] + "F" + mn[10:]
        keep = tuple(p for p in device.points if p.point_type != "control")
        moved = tuple(
            replace(p, device_mn=b_mn, circuit=i) for i, p in enumerate(controls, start=1)
        )
        devices[mn] = replace(device, points=keep)
        devices[b_mn] = replace(device, mn=b_mn, points=moved)
    return Fleet(
        devices=devices,
        enterprises=fleet.enterprises,
        facilities=fleet.facilities,
        groups=fleet.groups,
        points={},
        city_seed=fleet.city_seed,
        seed=fleet.seed,
    )


def registry_changes(fleet: Fleet) -> list[RegistryChange]:
    """The fleet's archive, with a valid credit code and an industry class per enterprise
    (the simulator's synthetic enterprises have neither: the archive checks would flag
    every one)."""
    out: list[RegistryChange] = []
    for index, change in enumerate(fleet.registry_changes()):
        if change.entity == "enterprise":
            body = f"91610113MA{index:07d}"
            snapshot = {
                **change.snapshot,
                "credit_code": body + credit_check_char(body),
                "industry_code": "3011",
                "om_company": "运维甲",
            }
            change = change.model_copy(update={"snapshot": snapshot})
        out.append(change)
    return out


def point_of(fleet: Fleet, point_id: str) -> PointSpec:
    return fleet.points[point_id]
