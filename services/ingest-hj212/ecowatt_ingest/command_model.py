"""What a reverse command is while it waits and while it runs (data only, no behaviour).

Kept apart from `commands` so that a `Session` can hold its command queue without the
session module importing the command manager.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["HISTORY_CNS", "ActiveCommand", "PlannedCommand"]

HISTORY_CNS = frozenset({"2031", "2041", "2051", "2061"})
"""History requests: the device answers with uploads of the same CN (HJ 212-2017 §3.3)."""


@dataclass(slots=True)
class PlannedCommand:
    command_id: str
    cn: str
    params: dict[str, str]
    requested_by: str
    overtime_s: int
    recount: int
    internal: bool = False


@dataclass(slots=True, eq=False)
class ActiveCommand:
    planned: PlannedCommand
    qn: str
    data: bytes
    attempts: int = 0
    phase: str = "request"
    timer: asyncio.TimerHandle | None = None
    qn_rtn: int | None = None
    uploads: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    window: tuple[datetime, datetime] | None = None
    """History requests: BeginTime..EndTime, naive local time (which uploads answer it)."""
