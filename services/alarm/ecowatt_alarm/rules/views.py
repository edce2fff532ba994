"""Rule endpoints: the catalogue, and editing a rule (a new version)."""

from __future__ import annotations

from typing import Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity
from ecowatt_kernel.pagination import Page, PageParams
from fastapi import APIRouter

from ecowatt_alarm.dependencies import CitySupervisor, Processor
from ecowatt_alarm.rules import service
from ecowatt_alarm.rules.models import RuleEdit

router = APIRouter(tags=["rules"])


@router.get("/rules", summary="The rule catalogue with parameters and versions")
async def list_rules(
    identity: CurrentIdentity, session: DbSession, page: PageParams
) -> Page[dict[str, Any]]:
    return await service.list_rules(session=session, page=page)


@router.put("/rules/{code}", summary="Change a rule's parameters (a new version)")
async def edit_rule(
    code: str,
    body: RuleEdit,
    session: DbSession,
    processor: Processor,
    identity: CitySupervisor,
) -> dict[str, Any]:
    result = await service.edit_rule(session=session, code=code, body=body, identity=identity)
    await session.commit()
    await processor.reload_rules()
    return result
