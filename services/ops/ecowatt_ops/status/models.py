"""The shapes of the status API (English keys; the web application labels them in Chinese)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "ConsumerLag",
    "DatabaseState",
    "DeadLetters",
    "DeviceLinks",
    "Overall",
    "PlatformStatus",
    "RedisState",
    "ServiceHealth",
]

Overall = Literal["ok", "degraded", "down"]


class ServiceHealth(BaseModel):
    """One service's answer to `/readyz`."""

    name: str
    url: str
    status: Literal["ready", "not_ready", "unreachable"]
    checks: dict[str, bool] = Field(
        default_factory=dict, description="The service's own checks (bus, redis, database, …)."
    )
    latency_ms: float | None = None
    error: str | None = None


class ConsumerLag(BaseModel):
    """How far one consumer group is behind on one topic."""

    group: str
    topic: str
    lag: int = Field(description="Messages published but not yet committed by the group.")
    partitions: int = Field(description="Partitions of the topic (0: not known, standalone).")
    source: Literal["kafka", "metrics"]


class DeadLetters(BaseModel):
    """Messages on one dead-letter topic (kept for the topic's retention)."""

    topic: str
    source_topic: str
    messages: int | None = Field(None, description="None when the topic could not be read.")


class DatabaseState(BaseModel):
    ok: bool
    version: str | None = None
    size_bytes: int | None = None
    connections: int | None = None
    in_recovery: bool | None = Field(None, description="True on a standby (read-only) server.")
    latency_ms: float | None = None
    error: str | None = None


class RedisState(BaseModel):
    ok: bool
    version: str | None = None
    role: str | None = None
    used_memory_bytes: int | None = None
    connected_clients: int | None = None
    uptime_s: int | None = None
    latency_ms: float | None = None
    error: str | None = None


class DeviceLinks(BaseModel):
    """Device TCP links as the ingest instances report them (their Prometheus gauges)."""

    connections: int = Field(description="Open TCP connections.")
    sessions: int = Field(description="Connections bound to a device MN.")
    ingest_instances: int = Field(description="Ingest processes whose metrics were read.")
    frames_by_verdict: dict[str, int] = Field(
        default_factory=dict, description="Frames since those processes started, by verdict."
    )


class PlatformStatus(BaseModel):
    """Everything the status page shows, with the problems that decide `status`."""

    status: Overall
    problems: list[str] = Field(
        default_factory=list, description="Why the status is not ok, one sentence each."
    )
    checked_at: datetime
    services: list[ServiceHealth]
    consumers: list[ConsumerLag]
    dead_letters: list[DeadLetters]
    database: DatabaseState
    redis: RedisState
    devices: DeviceLinks
