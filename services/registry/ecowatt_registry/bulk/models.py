"""An enterprise's archive in one body: the enterprise and what belongs to it. Children may
leave `enterprise_id` out (it is the enterprise's); ids may be chosen or generated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ecowatt_registry.control_groups.models import ControlGroupCreate
from ecowatt_registry.devices.models import DeviceCreate
from ecowatt_registry.enterprises.models import EnterpriseCreate
from ecowatt_registry.facilities.models import FacilityCreate
from ecowatt_registry.points.models import PointCreate
from ecowatt_registry.production_lines.models import ProductionLineCreate

__all__ = ["BUNDLE_MAX", "BundleCreated", "EnterpriseBundle"]

BUNDLE_MAX = 2000
"""Entities of one kind in one bundle (an enterprise has tens; this bounds a request)."""


class BundleProductionLine(ProductionLineCreate):
    enterprise_id: str | None = None  # type: ignore[assignment]


class BundleFacility(FacilityCreate):
    enterprise_id: str | None = None  # type: ignore[assignment]


class BundlePoint(PointCreate):
    enterprise_id: str | None = None  # type: ignore[assignment]


class BundleControlGroup(ControlGroupCreate):
    enterprise_id: str | None = None  # type: ignore[assignment]


class EnterpriseBundle(BaseModel):
    """An enterprise with its production lines, facilities, devices, points and control
    groups (产治关系), created together or not at all."""

    model_config = ConfigDict(extra="forbid")

    enterprise: EnterpriseCreate
    production_lines: list[BundleProductionLine] = Field(
        default_factory=list, max_length=BUNDLE_MAX
    )
    facilities: list[BundleFacility] = Field(default_factory=list, max_length=BUNDLE_MAX)
    devices: list[DeviceCreate] = Field(default_factory=list, max_length=BUNDLE_MAX)
    points: list[BundlePoint] = Field(default_factory=list, max_length=BUNDLE_MAX)
    control_groups: list[BundleControlGroup] = Field(default_factory=list, max_length=BUNDLE_MAX)
    reason: str | None = Field(None, max_length=500, description="Why (kept in the history)")


class BundleCreated(BaseModel):
    enterprise_id: str
    created: dict[str, int] = Field(description="Entities created, by kind")
    ids: dict[str, list[str]] = Field(description="Their ids, in the order given, by kind")
