"""JSON-lines logging with the service name and the current trace id on every line.

Secrets are kept out of logs in two ways: settings hold them as `SecretStr`, and a filter
masks HJ 212 passwords (`PW=...`) and `password=`/`token=` pairs in any message, because raw
frames and URLs end up in log messages.

One record is one line, whatever came from outside: frames, MNs, query strings and names
may carry CR, LF or terminal escapes, which could forge a log line or rewrite a terminal. The
JSON format escapes every control character (C0, DEL, C1 and the Unicode line and paragraph
separators) inside its strings; the text format writes them as `\r`, `\n`, `\x1b`, `\u2028`
and indents the lines of a traceback, so no line of a record starts like a new record.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from ecowatt_kernel.tracing import current_trace_id

__all__ = [
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
    "escape_controls",
    "redact",
]

_SECRET_PATTERNS = (
    (re.compile(r"(PW=)[^;&]*"), r"\1***"),
    (
        re.compile(
            r"((?:password|passwd|token|secret|api[_-]?key)[\"']?\s*[=:]\s*[\"']?)[^\s,;&\"']+",
            re.IGNORECASE,
        ),
        r"\1***",
    ),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+(@)"), r"\1***\2"),
)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """`text` on one line: control characters written as escapes (`\\n`, `\\x1b`, …)."""
    return _CONTROLS.sub(_escape_one, text)


def redact(text: str) -> str:
    """Mask secrets in `text`."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in the rendered message before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, service, trace_id, msg, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "service": self.service,
            "msg": record.getMessage(),
        }
        trace_id = current_trace_id()
        if trace_id:
            line["trace_id"] = trace_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        # json escapes C0 controls; C1 and the Unicode line separators are escaped too, so
        # that no reader splits a record (ensure_ascii=False keeps Chinese text readable).
        return _CONTROLS.sub(
            lambda m: f"\\u{ord(m.group()):04x}",
            json.dumps(line, ensure_ascii=False, default=str),
        )


class TextFormatter(logging.Formatter):
    """`time level logger: message`, one line per record (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        lines = redact(super().formatException(ei)).splitlines()
        return "\n".join("    " + escape_controls(line) for line in lines)


def configure_logging(*, service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route the root logger to stderr in the chosen format, with redaction."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
