"""District contacts: who in a district hears about alarms, by SMS and/or webhook."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["DistrictContact"]


class DistrictContact(BaseModel):
    district_code: str
    name: str
    phone: str | None = None
    webhook_url: str | None = None
    min_level: int = Field(1, ge=1, le=3)
