from __future__ import annotations

import json
import logging

from ecowatt_kernel.logging import JsonFormatter, RedactingFilter, redact
from ecowatt_kernel.tracing import trace_context


def _render(message: str, *args: object, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("ecowatt.test", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    RedactingFilter().filter(record)
    return json.loads(JsonFormatter("registry").format(record))  # type: ignore[no-any-return]


def test_log_lines_are_json_with_service_and_trace_id() -> None:
    with trace_context("abc123") as trace_id:
        line = _render("device %s online", "MN1", peer="10.0.0.1:5000")
    assert line["msg"] == "device MN1 online"
    assert line["service"] == "registry"
    assert line["trace_id"] == trace_id == "abc123"
    assert line["peer"] == "10.0.0.1:5000"
    assert line["level"] == "INFO"


def test_device_passwords_and_url_credentials_are_masked() -> None:
    frame = "##0101QN=1;ST=32;CN=1062;PW=100000;MN=A1;Flag=5;CP=&&RtdInterval=30&&1C80"
    line = _render("frame %s", frame)
    assert "100000" not in str(line["msg"])
    assert "PW=***" in str(line["msg"])
    assert redact("postgresql://ecowatt:s3cret@db:5432/x") == "postgresql://ecowatt:***@db:5432/x"
    assert "xyz" not in redact("token=xyz password: abc")
