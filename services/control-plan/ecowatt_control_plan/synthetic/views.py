"""Admin action: generate the synthetic reduction list for the archive (an empty list only)."""

from __future__ import annotations

from typing import Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity, Role, require_roles
from ecowatt_kernel.problems import Conflict
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ecowatt_control_plan import access
from ecowatt_control_plan.runtime import CurrentRuntime, require_archive
from ecowatt_control_plan.synthetic import service

router = APIRouter(prefix="/admin", tags=["admin"])


class SyntheticList(BaseModel):
    seed: int | None = Field(None, description="Default: ECOWATT_CONTROL_PLAN_SEED")


@router.post(
    "/synthetic-list",
    status_code=201,
    summary="Generate a synthetic reduction list for the archive (only when the list is empty)",
    dependencies=[require_roles(Role.ADMIN)],
)
async def synthetic_list(
    body: SyntheticList,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> dict[str, Any]:
    require_archive(runtime)
    seed = body.seed if body.seed is not None else runtime.settings.control_plan_seed
    version = await service.seed_list(
        db_session, view=runtime.view, seed=seed, actor=access.actor_of(identity)
    )
    if version is None:
        raise Conflict("the reduction list is not empty (or the archive has no production)")
    await runtime.audit(
        db_session,
        identity=identity,
        action="control_plan.list.synthetic",
        resource=f"reduction-list:v{version}",
        details={"seed": seed},
        request=request,
    )
    await runtime.commit(db_session)
    return {"version": version, "seed": seed}
