"""Snapshots of archive entities, as carried in `RegistryChange.snapshot` (registry.changes).

The registry publishes the full current state of an entity after every change; consumers
(ingest, validation, alarm, control-plan, the device simulator) rebuild their view of the
archive from the compacted topic alone. `parse_snapshot` validates a change's snapshot into
the model for its `entity`. Like events, snapshots grow by adding optional fields.

Field meanings follow the supervision domain reference, §1 (the archive's fields; its
proposals are the default); each field's description says what it means.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ecowatt_kernel.contracts.envelope import ContractError
from ecowatt_kernel.contracts.events import RegistryChange

__all__ = [
    "ENTITY_MODELS",
    "Contact",
    "ControlGroupSnapshot",
    "DeviceSnapshot",
    "EnterpriseSnapshot",
    "FacilitySnapshot",
    "PointSnapshot",
    "PointType",
    "ProductionLineSnapshot",
    "Snapshot",
    "parse_snapshot",
]

PointType = Literal["total", "production", "control", "indirect", "combined"]
"""企业总电 / 产污设施 / 治污设施 / 间接用电 / 产治一体."""


class Snapshot(BaseModel):
    """Base of every archive snapshot."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    updated_at: AwareDatetime


class Contact(BaseModel):
    """A person to notify (alarms, tasks)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    phone: str | None = None
    role: str | None = Field(None, description="e.g. 环保负责人, 法人代表, 联系人")
    notify: bool = True


class EnterpriseSnapshot(Snapshot):
    """企业档案: entity `enterprise`."""

    name: str
    credit_code: str | None = Field(None, description="统一社会信用代码 (GB 32100), 18 chars")
    district_code: str = Field(description="GB/T 2260 county-level code, e.g. 610113")
    district_name: str | None = Field(None, description="Name of `district_code`, e.g. 雁塔区")
    zone: str | None = Field(None, description="Management zone (管理片区/开发区)")
    town: str | None = Field(None, description="街乡镇")
    address: str | None = None
    longitude: float | None = Field(None, description="WGS-84")
    latitude: float | None = Field(None, description="WGS-84")
    industry_code: str | None = Field(None, description="GB/T 4754-2017 class (小类), 4 digits")
    industry_name: str | None = Field(None, description="Name of `industry_code`")
    industry_section: str | None = Field(None, description="门类 letter derived from the code")
    industry_division: str | None = Field(None, description="大类 (2 digits) derived from the code")
    key_industry: str | None = Field(None, description="重点行业类型 for performance grading")
    performance_grade: Literal["A", "B", "C", "D", "leading", "none"] = "none"
    performance_grade_since: date | None = Field(None, description="Date the grade took effect")
    control_type: str | None = Field(None, description="管控类型, e.g. ordinary, 民生保障")
    exempt: bool = False
    production_status: Literal["normal", "suspended", "closed"] = "normal"
    om_company: str | None = Field(None, description="运维单位")
    contacts: tuple[Contact, ...] = ()


class ProductionLineSnapshot(Snapshot):
    """生产线: entity `production_line`."""

    enterprise_id: str
    name: str
    process: str | None = None


class FacilitySnapshot(Snapshot):
    """产污设施 or 治污设施: entity `facility`."""

    enterprise_id: str
    kind: Literal["production", "control"]
    name: str
    code: str | None = Field(None, description="设施编号 inside the enterprise")
    production_line_id: str | None = None
    process: str | None = Field(None, description="工序/工艺")
    control_type: str | None = Field(None, description="Control facilities: e.g. bag filter")
    rated_kw: float | None = None
    status: Literal["active", "disabled", "removed"] = "active"


class ControlGroupSnapshot(Snapshot):
    """产治关系: entity `control_group`."""

    enterprise_id: str
    name: str | None = None
    production_facility_ids: tuple[str, ...]
    control_facility_ids: tuple[str, ...]
    required_mode: Literal["all", "any"] = "all"
    start_lead_min: int = Field(5, description="Control may start this late after production")
    stop_lag_min: int = Field(5, description="Control may stop this early before production")
    valid_from: date | None = None
    valid_to: date | None = None


class PointSnapshot(Snapshot):
    """监测点位: entity `point`."""

    enterprise_id: str
    facility_id: str | None = Field(None, description="None for the enterprise total line")
    point_type: PointType
    name: str
    is_key: bool = Field(True, description="A control facility runs only if its key points run")
    device_mn: str | None = None
    circuit: int = Field(1, ge=1, le=99, description="Circuit number on the device")
    ct_ratio: float = 1.0
    pt_ratio: float = 1.0
    rated_kw: float | None = None
    max_load_kw: float | None = None
    start_stop_kw: float | None = Field(None, description="启停阈值")
    low_load_kw: float | None = None
    commissioned_at: AwareDatetime | None = Field(None, description="联网时间")
    status: Literal["active", "disabled", "removed"] = "active"
    expected_interval_s: int = Field(60, description="Expected reporting interval")


class DeviceSnapshot(Snapshot):
    """数采仪: entity `device`; `id` is the MN."""

    mn: str
    enterprise_id: str | None = None
    name: str | None = None
    password_hash: str | None = Field(
        None, description="Hash of the HJ 212 PW (ecowatt_kernel.passwords); never the PW"
    )
    protocol_version: Literal["2005", "2017", "2025"] = "2017"
    electricity_profile: str = Field("ecowatt-default", description="hj212 electricity profile")
    crc_variant: Literal["standard", "modbus_hi_lo", "modbus_lo_hi"] = "standard"
    status: Literal["active", "disabled", "removed"] = "active"
    rtd_interval_s: int | None = None


ENTITY_MODELS: dict[str, type[Snapshot]] = {
    "enterprise": EnterpriseSnapshot,
    "production_line": ProductionLineSnapshot,
    "facility": FacilitySnapshot,
    "control_group": ControlGroupSnapshot,
    "point": PointSnapshot,
    "device": DeviceSnapshot,
}


def parse_snapshot(change: RegistryChange) -> Snapshot | None:
    """The typed snapshot of `change`; None for a delete."""
    if change.operation == "delete" or change.snapshot is None:
        return None
    model = ENTITY_MODELS.get(change.entity)
    if model is None:
        raise ContractError(f"unknown registry entity {change.entity!r}")
    return model.model_validate(change.snapshot)
