from __future__ import annotations

import io
import json
import logging

from ecowatt_kernel.logging import JsonFormatter, RedactingFilter, TextFormatter, redact
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


FORGED = (
    "MN1\r\n2026-12-07 08:00:00 INFO ecowatt.ingest: device MN2 authenticated\x1b[2J\u2028x\x85"
)


def _text_lines(message: str, *args: object, exc: bool = False) -> list[str]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("ecowatt.test.injection")
    logger.handlers[:] = [handler]
    logger.propagate = False
    try:
        if exc:
            try:
                raise ValueError(message)
            except ValueError:
                logger.exception("failed for %s", *args)
        else:
            logger.warning(message, *args)
    finally:
        logger.handlers[:] = []
    return stream.getvalue().splitlines()


def test_text_logs_keep_one_record_per_line_whatever_came_from_outside() -> None:
    lines = _text_lines("unknown device %s", FORGED)
    assert len(lines) == 1, lines
    assert "\\r\\n2026-12-07" in lines[0] and "\\x1b[2J" in lines[0] and "\\u2028" in lines[0]
    assert "\x1b" not in lines[0]


def test_text_log_tracebacks_cannot_forge_a_record() -> None:
    lines = _text_lines(FORGED, "MN1", exc=True)
    assert lines[0].endswith("failed for MN1")
    # Every further line belongs to the traceback: indented, never a record of its own.
    assert all(line.startswith("    ") for line in lines[1:]), lines
    assert not any(line.startswith("2026-12-07 08:00:00") for line in lines)
    assert any(line.startswith("    2026-12-07") for line in lines), "kept, but indented"
    assert not any("\x1b" in line for line in lines)


def test_json_logs_escape_every_line_separator() -> None:
    record = logging.LogRecord("ecowatt.test", logging.INFO, __file__, 1, "x %s", (FORGED,), None)
    rendered = JsonFormatter("ingest").format(record)
    assert len(rendered.splitlines()) == 1, rendered
    assert json.loads(rendered)["msg"] == f"x {FORGED}", "escaped, not altered"
