"""Event contracts: the envelope, one model per event, and the topic registry (DESIGN §3)."""

from __future__ import annotations

from ecowatt_kernel.contracts.envelope import (
    ContractError,
    Envelope,
    Event,
    decode,
    encode,
    event_class,
    register_event,
    registered_events,
)
from ecowatt_kernel.contracts.events import (
    AlarmChanged,
    AuditEvent,
    ComplianceVerdict,
    ControlTaskChanged,
    DeviceCommand,
    DeviceCommandResult,
    FacilityStateChanged,
    FrameReceived,
    PointReading,
    QualityFindingChanged,
    RegistryChange,
    TelemetryReading,
)
from ecowatt_kernel.contracts.topics import DLQ_SUFFIX, TOPICS, TopicSpec, dlq_topic, topic

__all__ = [
    "DLQ_SUFFIX",
    "TOPICS",
    "AlarmChanged",
    "AuditEvent",
    "ComplianceVerdict",
    "ContractError",
    "ControlTaskChanged",
    "DeviceCommand",
    "DeviceCommandResult",
    "Envelope",
    "Event",
    "FacilityStateChanged",
    "FrameReceived",
    "PointReading",
    "QualityFindingChanged",
    "RegistryChange",
    "TelemetryReading",
    "TopicSpec",
    "decode",
    "dlq_topic",
    "encode",
    "event_class",
    "register_event",
    "registered_events",
    "topic",
]
