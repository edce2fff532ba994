"""A rule edit: new parameters and/or enabled, with the reason (a new version)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["RuleEdit"]


class RuleEdit(BaseModel):
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool | None = None
    reason: str = Field(min_length=2)
