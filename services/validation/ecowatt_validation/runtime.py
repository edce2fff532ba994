"""What the running validation service holds, and the one typed way request handlers reach
it: `service.on_startup` stores the `Runtime` under `RUNTIME`; views declare a
`CurrentRuntime` parameter.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any

from ecowatt_kernel.app import StateKey
from ecowatt_kernel.db import Database
from ecowatt_kernel.outbox import OutboxRelay
from ecowatt_kernel.registry_view import RegistryView
from fastapi import Depends

from ecowatt_validation.binding import Binder
from ecowatt_validation.checks import Checks
from ecowatt_validation.findings import FindingStore
from ecowatt_validation.rulebook import RuleBook
from ecowatt_validation.settings import ValidationSettings

__all__ = ["RUNTIME", "CurrentRuntime", "Runtime"]


@dataclass
class Runtime:
    """Everything the running service holds; request handlers reach it through the app."""

    settings: ValidationSettings
    database: Database
    view: RegistryView
    rulebook: RuleBook
    findings: FindingStore
    binder: Binder
    checks: Checks
    relay: OutboxRelay
    jobs: list[Any]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def run_day(self, day: date, trigger: str) -> dict[str, Any]:
        await self.view.wait_ready()
        async with self.database.transaction() as session:
            await self.rulebook.load(session)
        return await self.checks.run_day(day, trigger=trigger)


RUNTIME = StateKey("validation", Runtime)
CurrentRuntime = Annotated[Runtime, Depends(RUNTIME.from_request)]
"""Dependency: the running service's `Runtime`."""
