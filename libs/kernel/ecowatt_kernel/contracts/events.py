"""Event models, one or more per topic of DESIGN §3.

These are the first fields of each contract; services add optional fields as they grow.
Times are timezone-aware UTC. Keys follow DESIGN §3: device topics by MN, analytics topics by
enterprise id (so one consumer sees all points of an enterprise in order), the registry by
entity, audit by actor.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BeforeValidator, Field, PlainSerializer, WithJsonSchema

from ecowatt_kernel.contracts.envelope import Event, register_event
from ecowatt_kernel.ids import new_uuid

__all__ = [
    "CANONICAL_QUANTITIES",
    "AlarmChanged",
    "AuditEvent",
    "ComplianceVerdict",
    "ControlTaskChanged",
    "DeviceCommand",
    "DeviceCommandResult",
    "FacilityStateChanged",
    "FrameReceived",
    "PointReading",
    "QualityFindingChanged",
    "RegistryChange",
    "TelemetryReading",
]


def _from_base64(value: object) -> object:
    return base64.b64decode(value, validate=True) if isinstance(value, str) else value


RawBytes = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    PlainSerializer(lambda b: base64.b64encode(b).decode(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "base64"}),
]
"""Bytes in Python, base64 text in JSON: raw frames need not be valid UTF-8."""

# ----------------------------------------------------------------------------- device edge


@register_event
class FrameReceived(Event):
    """One frame as received from a device, accepted or not (hj212.frames)."""

    event_type = "hj212.frame"
    topic = "hj212.frames"

    frame_id: uuid.UUID = Field(default_factory=new_uuid)
    raw: RawBytes = Field(description="The frame exactly as received.")
    peer: str = Field(description="Remote address, host:port.")
    received_at: AwareDatetime
    mn: str | None = Field(None, description="Device MN, when it could be read.")
    cn: str | None = None
    qn: str | None = None
    verdict: Literal["accepted", "rejected", "unregistered", "duplicate"]
    reason_code: str | None = Field(None, description="Machine-readable reason when not accepted.")
    reason: str | None = Field(None, description="Human explanation, expected vs given.")
    session_id: str | None = None
    ingest_instance: str | None = None

    def partition_key(self) -> str:
        return self.mn or f"peer:{self.peer}"


@register_event
class TelemetryReading(Event):
    """One decoded data frame (telemetry.readings)."""

    event_type = "telemetry.reading"
    topic = "telemetry.readings"

    idempotency_key: str = Field(description="MN|CN|DataTime: the same data is processed once.")
    mn: str
    cn: str
    st: str | None = None
    qn: str | None = None
    data_time: AwareDatetime = Field(description="DataTime converted from local time to UTC.")
    received_at: AwareDatetime
    protocol_version: str | None = Field(None, description="2005, 2017 or 2025.")
    registered: bool = Field(
        True,
        description="Always true from ingest: readings are published only for a device whose "
        "MN and PW were verified against the registry (a frame with an unknown MN or a wrong "
        "PW is recorded on hj212.frames only).",
    )
    items: dict[str, dict[str, str]] = Field(
        description="Values by code, then by suffix, as sent: {'e70101': {'Rtd': '12.5', "
        "'Flag': 'N'}}."
    )
    frame_id: uuid.UUID | None = Field(
        None,
        description="The FrameReceived this reading was decoded from: the raw frame in "
        "ingest's archive is GET /api/ingest-hj212/archive/frames/{frame_id}?received_at=…",
    )
    history: bool = Field(
        False,
        description="True when the data are history, not live: the frame answers a history "
        "request running for the device (a 2031/2041/2051/2061 command of the same CN, "
        "DataTime within its BeginTime..EndTime), or the device delivers data from before its "
        "current connection (DataTime plus the CN's period — 2061 one hour, 2031/2041 one "
        "day, otherwise none — earlier than the connection's start minus ingest's "
        "history_grace_s). Late by design: not to be judged for latency.",
    )

    def partition_key(self) -> str:
        return self.mn


# --------------------------------------------------------------------------------- registry


@register_event
class RegistryChange(Event):
    """Full snapshot of an archive entity after a change (registry.changes, compacted)."""

    event_type = "registry.change"
    topic = "registry.changes"

    entity: str = Field(description="enterprise, facility, control_group, point, device, …")
    entity_id: str
    operation: Literal["upsert", "delete"]
    revision: int = Field(description="Increases with every change of this entity.")
    changed_at: AwareDatetime
    actor: str | None = None
    snapshot: dict[str, Any] | None = Field(None, description="The entity; None for delete.")

    def partition_key(self) -> str:
        return f"{self.entity}:{self.entity_id}"


# -------------------------------------------------------------------------------- analytics


CANONICAL_QUANTITIES = (
    "active_power_kw",
    "energy_total_kwh",
    "energy_interval_kwh",
    "energy_delta_kwh",
    "current_a",
    "voltage_v",
    "power_factor",
    "switch_state",
    "run_state",
    "run_time_h",
)
"""Quantity names of `PointReading.values` (the hj212 profiles' names, plus the derived
`energy_delta_kwh`: energy used since the previous counter reading, resets excluded).

A value key is `<quantity>[:<phase>][:<aggregate>]`: `active_power_kw` (instantaneous for
real-time data, average for interval data), `active_power_kw:min`, `active_power_kw:max`,
`current_a:A`, `voltage_v:C`, `voltage_v:C:max`. Values are after CT/PT ratios."""


@register_event
class PointReading(Event):
    """A reading bound to a monitoring point, in canonical quantities (telemetry.points)."""

    event_type = "telemetry.point"
    topic = "telemetry.points"

    enterprise_id: str
    point_id: str
    mn: str
    cn: str
    circuit: int | None = None
    interval: Literal["realtime", "minute", "hour", "day", "other"] = "realtime"
    data_time: AwareDatetime = Field(
        description="Sampling moment (real-time) or interval start (minute/hour/day), UTC."
    )
    values: dict[str, float] = Field(
        description="Canonical quantities keyed `<quantity>[:<phase>][:<aggregate>]`; see "
        "CANONICAL_QUANTITIES."
    )
    quality: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Quality flags per value key; absent or [] means valid. HJ 212 data flags "
        "other than N appear as `flag:<X>`.",
    )
    valid: bool = Field(True, description="False when the reading must not drive analyses.")
    source_key: str | None = Field(
        None,
        description="Idempotency key of the source reading (MN|CN|DataTime); its raw frames "
        "(every arrival, re-sends included) are GET /api/ingest-hj212/archive/frames"
        "?source_key=…",
    )
    history: bool = Field(
        False,
        description="The source reading's `TelemetryReading.history`: back-filled or re-sent "
        "data, late by design.",
    )

    def partition_key(self) -> str:
        return self.enterprise_id


@register_event
class QualityFindingChanged(Event):
    """A data-quality or completeness finding opened, updated or resolved (quality.findings)."""

    event_type = "quality.finding"
    topic = "quality.findings"

    finding_id: str
    enterprise_id: str
    rule_code: str
    rule_version: int
    status: Literal["open", "updated", "resolved", "reopened"]
    subject_kind: Literal["enterprise", "facility", "point", "device"]
    subject_id: str
    opened_at: AwareDatetime
    changed_at: AwareDatetime
    evidence: dict[str, Any] = Field(default_factory=dict)
    om_company: str | None = None

    def partition_key(self) -> str:
        return self.enterprise_id


@register_event
class FacilityStateChanged(Event):
    """A point or facility changed state (facility.states)."""

    event_type = "facility.state"
    topic = "facility.states"

    enterprise_id: str
    subject_kind: Literal["point", "facility"]
    subject_id: str
    state: Literal["offline", "power_loss", "stopped", "standby", "running", "low_load"]
    previous_state: str | None = None
    since: AwareDatetime
    reason: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    facility_id: str | None = Field(None, description="For a point: the facility it measures.")

    def partition_key(self) -> str:
        return self.enterprise_id


@register_event
class AlarmChanged(Event):
    """An alarm opened, updated, escalated, suppressed, recovered or closed (alarms)."""

    event_type = "alarm"
    topic = "alarms"

    alarm_id: str
    enterprise_id: str
    rule_code: str
    rule_version: int
    subject_id: str = Field(description="Control group, point or device the alarm is about.")
    change: Literal[
        "opened", "updated", "escalated", "suppressed", "recovered", "closed", "retracted"
    ] = Field(
        description="`retracted`: late data showed that in-order data would not have raised "
        "it (`retraction` says why); the alarm is kept."
    )
    status: str
    level: int = 1
    opened_at: AwareDatetime
    changed_at: AwareDatetime
    explanation: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    rule_name: str | None = Field(
        None, description="The rule's Chinese name, e.g. 产污运行治污未运行."
    )
    subject_kind: Literal["group", "point", "device"] | None = None
    group_id: str | None = Field(None, description="The control group (产治关系), if any.")
    facility_ids: list[str] = Field(default_factory=list)
    active: bool | None = Field(None, description="True while the condition holds.")
    first_at: AwareDatetime | None = Field(None, description="When the condition began.")
    last_at: AwareDatetime | None = Field(None, description="Latest time it was seen holding.")
    recovered_at: AwareDatetime | None = None
    suppressed_by: dict[str, Any] | None = Field(
        None, description="Why it is suppressed: power loss, a planned-outage filing, a plan."
    )
    district_code: str | None = None
    discovered_at: AwareDatetime | None = Field(
        None,
        description="When the platform found it (`first_at` is when the violation began): "
        "later than the violation's confirmation for findings in late or back-filled data.",
    )
    late: bool = Field(
        False,
        description="Found in late or back-filled data: notified as a late finding, not as news.",
    )
    retraction: dict[str, Any] | None = Field(
        None, description="Why and when a `retracted` alarm was withdrawn."
    )

    def partition_key(self) -> str:
        return self.enterprise_id


# ------------------------------------------------------------------------------ control plans


@register_event
class ControlTaskChanged(Event):
    """Per-enterprise measures issued, changed or ended for an alert (control.tasks)."""

    event_type = "control.task"
    topic = "control.tasks"

    task_id: str
    alert_id: str
    enterprise_id: str
    change: Literal["issued", "changed", "ended"]
    valid_from: AwareDatetime
    valid_to: AwareDatetime | None = None
    measures: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The measures in force: `measure_id`, `action` (STOP, LIMIT, OFFPEAK, "
        "EXEMPT, KEEP_CONTROL_RUNNING), `target_kind` (enterprise, production_line, facility, "
        "point, control_group), `target_ids`, `reduction_pct`, `allowed_load_pct`, `windows` "
        "([{start, end}] local HH:MM), `ramp_min`, `effective_at` (ISO, UTC: checked from "
        "then on), `exempt_reason`, `legal_text`.",
    )
    level: Literal["yellow", "orange", "red"] | None = Field(
        None, description="The alert level whose measures apply (the highest active order)."
    )
    revision: int | None = Field(
        None, description="Increases with every change of this task (idempotent consumers)."
    )
    district_code: str | None = None
    list_version: int | None = Field(
        None, description="Version of the emergency reduction list the measures come from."
    )
    reason: str | None = Field(None, description="Why the task was issued, changed or ended.")

    def partition_key(self) -> str:
        return self.enterprise_id


@register_event
class ComplianceVerdict(Event):
    """Compliance verdict per enterprise and target per hour (control.compliance)."""

    event_type = "control.compliance"
    topic = "control.compliance"

    enterprise_id: str
    task_id: str
    target_id: str
    hour_start: AwareDatetime
    verdict: Literal["compliant", "non_compliant", "unknown"]
    evidence: dict[str, Any] = Field(default_factory=dict)
    alert_id: str | None = None
    action: str | None = Field(
        None,
        description="The measure judged (STOP, LIMIT, OFFPEAK, KEEP_CONTROL_RUNNING); "
        "`ENTERPRISE` for the enterprise's status of the hour.",
    )
    target_kind: str | None = Field(
        None, description="enterprise, production_line, facility, point or control_group."
    )
    status: str | None = Field(
        None,
        description="Enterprise status of the hour (action ENTERPRISE): 合规生产, 停工, "
        "未响应停产, 未响应减产, 未开启治污设备, 离线/无法判定.",
    )
    district_code: str | None = None
    revision: int = Field(1, description="Increases when a late reading changes the verdict.")

    def partition_key(self) -> str:
        return self.enterprise_id


# ---------------------------------------------------------------------------- device commands


@register_event
class DeviceCommand(Event):
    """A platform-to-device command (device.commands)."""

    event_type = "device.command"
    topic = "device.commands"

    command_id: str
    mn: str
    cn: str
    params: dict[str, str] = Field(default_factory=dict)
    requested_by: str
    requested_at: AwareDatetime
    overtime_s: int = Field(10, ge=1, le=99, description="HJ 212 OverTime per attempt.")
    recount: int = Field(3, ge=0, le=99, description="HJ 212 ReCount: resends on timeout.")

    def partition_key(self) -> str:
        return self.mn


@register_event
class DeviceCommandResult(Event):
    """What became of a device command (device.command-results)."""

    event_type = "device.command-result"
    topic = "device.command-results"

    command_id: str
    mn: str
    cn: str
    status: Literal["sent", "accepted", "rejected", "executed", "failed", "timeout", "offline"]
    qn: str | None = None
    qn_rtn: int | None = None
    exe_rtn: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    finished_at: datetime | None = None

    def partition_key(self) -> str:
        return self.mn


# ----------------------------------------------------------------------------------- audit


@register_event
class AuditEvent(Event):
    """Who did what, from where, with what result (audit.events)."""

    event_type = "audit.event"
    topic = "audit.events"

    actor: str
    actor_kind: Literal["user", "api_key", "service", "device", "anonymous"]
    action: str
    resource: str
    outcome: Literal["success", "denied", "failed"]
    at: AwareDatetime
    source_ip: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    def partition_key(self) -> str:
        return self.actor
