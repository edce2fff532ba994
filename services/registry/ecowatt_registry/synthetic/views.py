"""Admin endpoints: the synthetic city and the full re-publish."""

from __future__ import annotations

from typing import Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity
from ecowatt_kernel.problems import Conflict, NotFound
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ecowatt_registry import access
from ecowatt_registry.archive import republish_all
from ecowatt_registry.events.relay import commit
from ecowatt_registry.synthetic.generator import CityOptions
from ecowatt_registry.synthetic.service import archive_is_empty, recorded_city, seed_city

router = APIRouter(prefix="/admin", tags=["administration"], dependencies=[access.IsAdmin])


class CityRequest(BaseModel):
    enterprises: int = Field(200, ge=1, le=5000)
    seed: int = Field(20241, ge=0, le=2**62)
    defect_share: float = Field(0.05, ge=0, le=1, description="Share of enterprises per defect")


@router.get("/synthetic-city", summary="The seed and options of the synthetic city")
async def get_city(db_session: DbSession) -> dict[str, Any]:
    """Device passwords are `ecowatt_kernel.synthetic.device_password(seed, mn)`."""
    found = await recorded_city(db_session)
    if found is None:
        raise NotFound("the archive holds no synthetic city")
    return found


@router.post("/synthetic-city", summary="Generate the synthetic city into an empty archive")
async def create_city(body: CityRequest, request: Request, db_session: DbSession) -> dict[str, Any]:
    """Refused (409) when the archive holds data other than the same city."""
    recorded = await recorded_city(db_session)
    same = recorded is not None and all(recorded.get(k) == v for k, v in body.model_dump().items())
    if not same and not await archive_is_empty(db_session):
        raise Conflict("the archive is not empty; a synthetic city goes into an empty archive")
    summary = await seed_city(db_session, CityOptions(**body.model_dump()))
    await commit(request, db_session)
    return summary


class RepublishResult(BaseModel):
    messages: int = Field(description="Snapshots written to the outbox for publishing")


@router.post("/republish", summary="Publish every entity's snapshot again (rebuild consumers)")
async def republish(
    request: Request, db_session: DbSession, identity: CurrentIdentity
) -> RepublishResult:
    """All snapshots go through the outbox, in order with concurrent changes."""
    count = await republish_all(db_session, actor=access.actor_of(identity))
    await commit(request, db_session)
    return RepublishResult(messages=count)
