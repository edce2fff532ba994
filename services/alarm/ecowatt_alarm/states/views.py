"""State endpoints: current states, state history, thresholds, learning on demand."""

from __future__ import annotations

from typing import Annotated, Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity
from ecowatt_kernel.pagination import Page, PageParams
from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from ecowatt_alarm.dependencies import OmOperator, Processor, View
from ecowatt_alarm.states import service

router = APIRouter(tags=["states"])


@router.get("/states", summary="Current point and facility states of an enterprise")
async def states(
    enterprise_id: str, processor: Processor, view: View, identity: CurrentIdentity
) -> dict[str, Any]:
    return service.current_states(
        processor=processor, view=view, identity=identity, enterprise_id=enterprise_id
    )


@router.get(
    "/overview", summary="Every enterprise in scope with its facility states and open alarms"
)
async def overview(
    session: DbSession,
    processor: Processor,
    view: View,
    identity: CurrentIdentity,
    page: PageParams,
) -> Page[dict[str, Any]]:
    """The web application's city overview (一张图); live changes follow on the gateway's
    `/api/live/stream`."""
    return await service.overview(
        session=session, processor=processor, view=view, identity=identity, page=page
    )


@router.get("/states/history", summary="State changes of a point or facility")
async def state_history(
    subject_id: str,
    session: DbSession,
    view: View,
    identity: CurrentIdentity,
    page: PageParams,
    since: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    withdrawn: Annotated[
        bool, Query(description="also changes withdrawn by a re-judgement after late data")
    ] = False,
) -> Page[dict[str, Any]]:
    return await service.state_history(
        session=session,
        view=view,
        identity=identity,
        subject_id=subject_id,
        since=since,
        page=page,
        withdrawn=withdrawn,
    )


@router.get("/thresholds", summary="Configured, defaulted and learned thresholds with suggestions")
async def thresholds(
    enterprise_id: str,
    processor: Processor,
    view: View,
    identity: CurrentIdentity,
    page: PageParams,
) -> Page[dict[str, Any]]:
    return service.thresholds(
        processor=processor, view=view, identity=identity, enterprise_id=enterprise_id, page=page
    )


@router.post("/learning/run", summary="Recompute learned rated load now (normally nightly)")
async def run_learning(processor: Processor, identity: OmOperator) -> dict[str, Any]:
    return {"updated": await processor.learn()}
