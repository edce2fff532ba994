"""Trace ids that follow a request or a message across services.

The id lives in a context variable; the HTTP middleware and the bus set it from the incoming
request or message, and the bus and logs read it. Wire format: 32 lower-case hex characters
(the W3C trace-id width), carried in the `trace-id` message header and the `X-Trace-Id` HTTP
header.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["TRACE_HEADER", "current_trace_id", "new_trace_id", "trace_context"]

TRACE_HEADER = "trace-id"

_trace_id: ContextVar[str | None] = ContextVar("ecowatt_trace_id", default=None)


def new_trace_id() -> str:
    """Return a fresh random trace id."""
    return secrets.token_hex(16)


def current_trace_id() -> str | None:
    """Return the trace id of the work in progress, if any."""
    return _trace_id.get()


@contextlib.contextmanager
def trace_context(trace_id: str | None) -> Iterator[str]:
    """Run a block under `trace_id` (a new one when None)."""
    value = trace_id or new_trace_id()
    token = _trace_id.set(value)
    try:
        yield value
    finally:
        _trace_id.reset(token)
