"""Every table of the registry, imported so that `Base.metadata` knows them all."""

from ecowatt_registry.control_groups.models import ControlGroup, ControlGroupMember
from ecowatt_registry.database import OUTBOX, Base, Meta, Tombstone
from ecowatt_registry.devices.models import Device
from ecowatt_registry.enterprises.models import Enterprise, GradeRecord
from ecowatt_registry.facilities.models import Facility
from ecowatt_registry.history.models import HistoryRecord
from ecowatt_registry.points.models import Point
from ecowatt_registry.production_lines.models import ProductionLine

__all__ = [
    "OUTBOX",
    "Base",
    "ControlGroup",
    "ControlGroupMember",
    "Device",
    "Enterprise",
    "Facility",
    "GradeRecord",
    "HistoryRecord",
    "Meta",
    "Point",
    "ProductionLine",
    "Tombstone",
]
