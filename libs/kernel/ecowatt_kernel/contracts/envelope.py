"""The versioned envelope every event travels in, and its encoding on the bus.

On the wire a message value is the JSON envelope

    {"type": "telemetry.reading", "version": 1, "id": "…", "produced_at": "…",
     "trace_id": "…", "data": {…}}

and the message headers repeat `event-type`, `event-version` and `trace-id`, so that a
consumer picks the model from the headers and validates the whole value in one pass.
Contracts change by adding optional fields (consumers ignore fields they do not know); a
breaking change is a new type or version.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ecowatt_kernel.bus.types import Message, Record
from ecowatt_kernel.errors import EcoWattError
from ecowatt_kernel.ids import new_uuid
from ecowatt_kernel.tracing import TRACE_HEADER, current_trace_id, new_trace_id

__all__ = [
    "ContractError",
    "Envelope",
    "Event",
    "decode",
    "encode",
    "event_class",
    "register_event",
    "registered_events",
]

TYPE_HEADER = "event-type"
VERSION_HEADER = "event-version"


class ContractError(EcoWattError, ValueError):
    """A message does not match any known event contract."""


class Event(BaseModel):
    """Base of every event payload. Subclasses set the ClassVars and `partition_key`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    event_version: ClassVar[int] = 1
    topic: ClassVar[str]

    def partition_key(self) -> str:
        """The bus key of this event (DESIGN §3: MN, enterprise id, entity id, actor)."""
        raise NotImplementedError


EventT = TypeVar("EventT", bound=Event)


class Envelope(BaseModel, Generic[EventT]):
    """Metadata common to every event, around its payload."""

    model_config = ConfigDict(frozen=True)

    type: str
    version: int
    id: uuid.UUID = Field(default_factory=new_uuid)
    produced_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    trace_id: str
    data: EventT


_REGISTRY: dict[tuple[str, int], type[Event]] = {}
_ENVELOPES: dict[type[Event], type[Envelope[Any]]] = {}


def register_event(cls: type[EventT]) -> type[EventT]:
    """Class decorator: make `cls` decodable from the bus."""
    key = (cls.event_type, cls.event_version)
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise ContractError(f"event {key} registered twice")
    _REGISTRY[key] = cls
    _ENVELOPES[cls] = Envelope[cls]  # type: ignore[valid-type]
    return cls


def registered_events() -> list[type[Event]]:
    """Every registered event class, in registration order."""
    return list(_REGISTRY.values())


def event_class(event_type: str, version: int) -> type[Event]:
    """Return the model registered for (type, version)."""
    try:
        return _REGISTRY[(event_type, version)]
    except KeyError:
        raise ContractError(f"unknown event type {event_type!r} version {version}") from None


def encode(event: Event, *, trace_id: str | None = None, topic: str | None = None) -> Message:
    """Wrap `event` in an envelope and return the bus message for its topic."""
    trace = trace_id or current_trace_id() or new_trace_id()
    envelope = _ENVELOPES[type(event)](
        type=event.event_type, version=event.event_version, trace_id=trace, data=event
    )
    return Message(
        topic=topic or event.topic,
        key=event.partition_key().encode(),
        value=envelope.model_dump_json().encode(),
        headers=(
            (TYPE_HEADER, event.event_type.encode()),
            (VERSION_HEADER, str(event.event_version).encode()),
            (TRACE_HEADER, trace.encode()),
        ),
    )


def decode(record: Record) -> Envelope[Any]:
    """Validate a consumed record into its envelope; raise ContractError when it is not one."""
    headers = dict(record.headers)
    try:
        event_type = headers[TYPE_HEADER].decode()
        version = int(headers[VERSION_HEADER])
    except (KeyError, ValueError, UnicodeDecodeError):
        raise ContractError("message has no valid event-type/event-version headers") from None
    cls = event_class(event_type, version)
    try:
        return _ENVELOPES[cls].model_validate_json(record.value)
    except ValidationError as exc:
        raise ContractError(f"{event_type} v{version} does not match its contract: {exc}") from exc
