"""Alertmanager's webhook payload (version 4) and the receiver's answer."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["AlertIn", "AlertmanagerPayload", "ReceiverResult"]


class AlertIn(BaseModel):
    """One alert of a notification."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=64)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = Field("", max_length=2000)
    fingerprint: str = Field("", max_length=64)


class AlertmanagerPayload(BaseModel):
    """What Alertmanager POSTs to a webhook receiver (`version` 4)."""

    version: str = Field("4", max_length=8)
    groupKey: str = Field("", max_length=2000)
    truncatedAlerts: int = Field(0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = Field("", max_length=200)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = Field("", max_length=2000)
    alerts: list[AlertIn] = Field(max_length=1000)


class AlertOutcome(BaseModel):
    fingerprint: str
    correlation: str
    outcome: Literal["opened", "updated", "reopened", "resolved", "unchanged", "recorded"]
    incident_id: str | None


class ReceiverResult(BaseModel):
    alerts: list[AlertOutcome]
