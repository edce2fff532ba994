"""Planned-outage filings (计划停运报备): what an enterprise files and a bureau decides."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

__all__ = ["Decision", "FilingIn"]


class FilingIn(BaseModel):
    enterprise_id: str
    facility_ids: list[str] = Field(default_factory=list, description="Empty: whole enterprise")
    reason: str = Field(min_length=2, max_length=1000)
    category: Literal["maintenance", "retrofit", "trial_run", "power_cut", "other"] = "maintenance"
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class Decision(BaseModel):
    note: str | None = None
