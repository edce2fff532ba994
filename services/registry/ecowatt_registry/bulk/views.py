"""Bulk endpoint: `POST /enterprises/bulk` creates an enterprise with its archive at once."""

from __future__ import annotations

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity
from fastapi import APIRouter, Request

from ecowatt_registry import access
from ecowatt_registry.bulk import service
from ecowatt_registry.bulk.models import BundleCreated, EnterpriseBundle
from ecowatt_registry.events.relay import commit

router = APIRouter(prefix="/enterprises", tags=["enterprises"])


@router.post(
    "/bulk",
    summary="Create an enterprise with its production lines, facilities, devices, points "
    "and control groups in one transaction",
    status_code=201,
    dependencies=[access.CanEdit],
)
async def create_bundle(
    bundle: EnterpriseBundle, request: Request, db_session: DbSession, identity: CurrentIdentity
) -> BundleCreated:
    created = await service.create_bundle(session=db_session, identity=identity, bundle=bundle)
    await commit(request, db_session)
    return created
