from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ecowatt_kernel.bus import Record
from ecowatt_kernel.contracts import (
    TOPICS,
    ContractError,
    DeviceCommand,
    FrameReceived,
    PointReading,
    RegistryChange,
    TelemetryReading,
    decode,
    encode,
    registered_events,
)
from ecowatt_kernel.contracts.docs import render
from ecowatt_kernel.tracing import trace_context

NOW = datetime(2026, 11, 26, 5, 30, tzinfo=UTC)


def as_record(message: object) -> Record:
    return Record(message.topic, 0, 0, message.key, message.value, message.headers, 0)  # type: ignore[attr-defined]


def test_every_topic_has_events_and_every_event_a_registered_topic() -> None:
    topics_with_events = {cls.topic for cls in registered_events()}
    assert topics_with_events == set(TOPICS)


def test_round_trip_keeps_payload_and_trace() -> None:
    reading = TelemetryReading(
        idempotency_key="MN1|2051|20261126133000",
        mn="MN1",
        cn="2051",
        data_time=NOW,
        received_at=NOW,
        items={"e70101": {"Avg": "12.5", "Flag": "N"}},
    )
    with trace_context("feedbeef"):
        message = encode(reading)
    assert message.topic == "telemetry.readings"
    assert message.key == b"MN1"
    envelope = decode(as_record(message))
    assert envelope.type == "telemetry.reading" and envelope.version == 1
    assert envelope.trace_id == "feedbeef"
    assert envelope.data == reading


def test_raw_bytes_survive_the_envelope() -> None:
    raw = b"##0101QN=\xff\x00garbage\r\n"
    frame = FrameReceived(
        raw=raw, peer="10.1.1.1:4000", received_at=NOW, verdict="rejected", reason_code="bad_length"
    )
    assert decode(as_record(encode(frame))).data.raw == raw
    assert encode(frame).key == b"peer:10.1.1.1:4000"


@pytest.mark.parametrize(
    ("event", "key"),
    [
        (
            PointReading(
                enterprise_id="E9",
                point_id="P1",
                mn="MN",
                cn="2011",
                data_time=NOW,
                values={"power_kw": 1.0},
            ),
            b"E9",
        ),
        (
            RegistryChange(
                entity="point",
                entity_id="P1",
                operation="upsert",
                revision=3,
                changed_at=NOW,
                snapshot={},
            ),
            b"point:P1",
        ),
        (
            DeviceCommand(command_id="c1", mn="MN7", cn="1012", requested_by="u", requested_at=NOW),
            b"MN7",
        ),
    ],
)
def test_keys_follow_the_design(event: object, key: bytes) -> None:
    assert encode(event).key == key  # type: ignore[arg-type]


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    message = encode(
        DeviceCommand(command_id="c1", mn="M", cn="1012", requested_by="u", requested_at=NOW)
    )
    value = message.value.replace(b'"cn":"1012"', b'"cn":"1012","added_later":1')
    record = Record(message.topic, 0, 0, message.key, value, message.headers, 0)
    assert decode(record).data.cn == "1012"


def test_messages_that_are_not_contracts_are_refused() -> None:
    with pytest.raises(ContractError, match="headers"):
        decode(Record("alarms", 0, 0, None, b"{}", (), 0))
    with pytest.raises(ContractError, match="unknown event type"):
        decode(
            Record(
                "alarms", 0, 0, None, b"{}", (("event-type", b"nope"), ("event-version", b"1")), 0
            )
        )
    bad = Record(
        "device.commands",
        0,
        0,
        None,
        b'{"type":"device.command"}',
        (("event-type", b"device.command"), ("event-version", b"1")),
        0,
    )
    with pytest.raises(ContractError, match="does not match"):
        decode(bad)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        DeviceCommand(
            command_id="c", mn="M", cn="1012", requested_by="u", requested_at=datetime(2026, 1, 1)
        )


def test_envelope_ids_are_unique() -> None:
    event = DeviceCommand(command_id="c", mn="M", cn="1012", requested_by="u", requested_at=NOW)
    ids = {decode(as_record(encode(event))).id for _ in range(5)}
    assert len(ids) == 5 and all(isinstance(i, uuid.UUID) for i in ids)


def test_contract_docs_are_current() -> None:
    docs = Path(__file__).resolve().parents[4] / "docs" / "contracts.md"
    assert docs.read_text() == render(), "run `make contracts-docs`"


def test_registry_snapshots_parse_by_entity() -> None:
    from ecowatt_kernel.contracts import DeviceSnapshot, PointSnapshot, parse_snapshot

    point = PointSnapshot(
        id="P1",
        updated_at=NOW,
        enterprise_id="E1",
        point_type="control",
        name="除尘风机",
        device_mn="MN1",
        circuit=2,
        start_stop_kw=5.0,
    )
    change = RegistryChange(
        entity="point",
        entity_id="P1",
        operation="upsert",
        revision=1,
        changed_at=NOW,
        snapshot=point.model_dump(mode="json"),
    )
    parsed = parse_snapshot(decode(as_record(encode(change))).data)
    assert parsed == point
    deleted = change.model_copy(update={"operation": "delete", "snapshot": None})
    assert parse_snapshot(deleted) is None
    with pytest.raises(ContractError, match="unknown registry entity"):
        parse_snapshot(change.model_copy(update={"entity": "spaceship"}))
    with pytest.raises(ValueError):
        parse_snapshot(change.model_copy(update={"entity": "device"}))  # wrong shape
    assert DeviceSnapshot(id="MN1", mn="MN1", updated_at=NOW).crc_variant == "standard"
