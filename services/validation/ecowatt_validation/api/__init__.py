"""REST API of the validation service (mounted at /api/validation in standalone mode).

Every list is filtered by the caller's data scope on the server (district officers see their
districts, enterprise users their enterprise), paginated, and exported as .xlsx with
`?format=xlsx` (the same filters, every matching row, Chinese headers).
"""

from __future__ import annotations

from fastapi import APIRouter

from ecowatt_validation.api import findings, quality, rules, runs

router = APIRouter()
for part in (rules, findings, quality, runs):
    router.include_router(part.router)

__all__ = ["router"]
