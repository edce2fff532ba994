"""What the running reporting service holds, and the one typed way request handlers reach it.

`service.on_startup` builds the `Runtime` and stores it under `RUNTIME`; views declare a
`CurrentRuntime` parameter.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any

from ecowatt_kernel.app import StateKey
from ecowatt_kernel.db import Database
from ecowatt_kernel.registry_view import RegistryView
from fastapi import Depends

from ecowatt_reporting.archive.service import ArchiveSync
from ecowatt_reporting.events.service import EventRecorder
from ecowatt_reporting.history.service import HistoryWriter, Maintenance
from ecowatt_reporting.reports.service import Reports
from ecowatt_reporting.settings import ReportingSettings

__all__ = ["RUNTIME", "CurrentRuntime", "Runtime"]


@dataclass
class Runtime:
    """Everything the running service holds; request handlers reach it through the app."""

    settings: ReportingSettings
    database: Database
    view: RegistryView
    archive: ArchiveSync
    writer: HistoryWriter
    recorder: EventRecorder
    maintenance: Maintenance
    reports: Reports
    jobs: list[Any] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    demo_history: bool = False


RUNTIME = StateKey("reporting", Runtime)
CurrentRuntime = Annotated[Runtime, Depends(RUNTIME.from_request)]
"""Dependency: the running service's `Runtime`."""
