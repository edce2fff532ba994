"""Rows for the desk's Excel exports: local times, text a worksheet keeps as text."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

__all__ = ["EXPORT_LIMIT", "local_time", "safe_row", "safe_text"]

EXPORT_LIMIT = 50_000
"""Rows read for one export (the kernel refuses sheets beyond `MAX_EXPORT_ROWS`)."""
_FORMULA_START = ("=", "+", "-", "@")


def safe_text(value: Any) -> Any:
    """Text as a worksheet should show it: characters a worksheet cannot hold replaced, and a
    leading =, +, - or @ (which would make a formula of what a user typed) preceded by a
    space."""
    if isinstance(value, list | tuple):
        return [safe_text(item) for item in value]
    if not isinstance(value, str):
        return value
    value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    return " " + value if value.startswith(_FORMULA_START) else value


def safe_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: safe_text(value) for key, value in row.items()}


def local_time(row: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """Every aware date-time of `row` in the deployment's zone (Excel shows wall-clock time)."""
    return {
        key: value.astimezone(zone) if isinstance(value, datetime) and value.tzinfo else value
        for key, value in row.items()
    }
