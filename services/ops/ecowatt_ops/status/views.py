"""`GET /status`: the platform's health for the status page (admin, city supervisor, O&M)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import httpx
from ecowatt_kernel.app import ServiceContext, service_context
from ecowatt_kernel.identity import Role, require_roles
from fastapi import APIRouter, Depends, Query

from ecowatt_ops.settings import OpsSettings
from ecowatt_ops.status.models import PlatformStatus
from ecowatt_ops.status.service import platform_status

__all__ = ["STATUS_CACHE_KEY", "router"]

STATUS_CACHE_KEY = "status_cache"

router = APIRouter(
    prefix="/status",
    tags=["status"],
    dependencies=[require_roles(Role.CITY_SUPERVISOR, Role.OM_OPERATOR)],
)


class _Cache:
    """The last status and when it was taken; one round of checks at a time."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.value: PlatformStatus | None = None
        self.taken = 0.0


@router.get("", summary="Health of every service, consumer lag, dead letters, storage, devices")
async def get_status(
    context: Annotated[ServiceContext, Depends(service_context)],
    fresh: bool = Query(False, description="Check now instead of reusing a status ≤ 5 s old"),
) -> PlatformStatus:
    """Status `down` when PostgreSQL, Redis or ingest is out, `degraded` when another service
    is not ready or a consumer group lags; `problems` says why in one sentence each."""
    settings = context.settings
    assert isinstance(settings, OpsSettings)
    cache: _Cache = context.state.setdefault(STATUS_CACHE_KEY, _Cache())
    async with cache.lock:
        if fresh or cache.value is None or time.monotonic() - cache.taken > settings.ops_cache_s:
            async with httpx.AsyncClient(timeout=settings.ops_probe_timeout_s) as client:
                cache.value = await platform_status(context=context, client=client)
            cache.taken = time.monotonic()
        return cache.value
