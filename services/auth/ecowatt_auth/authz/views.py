"""Public identity keys (JWKS), the partner datasets, and the permission matrix as data."""

from __future__ import annotations

from typing import Any

from ecowatt_kernel.identity import CurrentIdentity
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ecowatt_auth.authz.matrix import DATASETS, MATRIX
from ecowatt_auth.runtime import Runtime

router = APIRouter(tags=["keys and permissions"])


@router.get("/jwks.json", summary="The public keys that verify identity tokens (JWKS)")
async def jwks(runtime: Runtime) -> JSONResponse:
    """The current signing key and the retired ones still trusted; services fetch this
    (`ECOWATT_IDENTITY_JWKS_URL`) to follow a key rotation without restarting."""
    return JSONResponse(
        runtime.published_keys.to_jwks(), headers={"Cache-Control": "public, max-age=60"}
    )


class DatasetRead(BaseModel):
    code: str
    name: str
    description: str
    endpoints: list[str]


@router.get(
    "/datasets",
    summary="The datasets API keys are scoped to, with their endpoints",
    response_model=list[DatasetRead],
)
async def datasets(_: CurrentIdentity) -> list[DatasetRead]:
    return [
        DatasetRead(
            code=code,
            name=dataset.name,
            description=dataset.description,
            endpoints=[f"{r.method} {r.path}" for r in MATRIX if r.dataset == code],
        )
        for code, dataset in DATASETS.items()
    ]


@router.get("/permissions", summary="The permission matrix: who may call which endpoint")
async def permissions(_: CurrentIdentity) -> list[dict[str, Any]]:
    return [
        {
            "method": r.method,
            "path": r.path,
            "access": r.access if isinstance(r.access, str) else "roles",
            "roles": sorted(r.roles),
            "dataset": r.dataset,
            "note": r.note,
        }
        for r in MATRIX
    ]
