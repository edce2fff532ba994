"""API keys: table and API models. The secret is shown once and stored as a SHA-256 hash.

A fast hash is right here, unlike for passwords: the secret is 256 random bits (nothing to
guess, so nothing for a memory-hard hash to slow down), and the gateway checks it on every
request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from ecowatt_auth.accounts.models import DISTRICT_CODE
from ecowatt_auth.authz.matrix import DATASETS
from ecowatt_auth.database import metadata

api_key = Table(
    "api_key",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("organisation", Text),
    Column("contact", Text),
    Column("secret_hash", Text, nullable=False),
    Column("datasets", ARRAY(Text), nullable=False),
    Column("scope_all", Boolean, nullable=False, server_default=text("false")),
    Column("districts", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("rate_per_minute", Integer, nullable=False),
    Column("quota_per_day", Integer, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False, server_default=text("'active'")),
    Column("replaced_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_by", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_by", Text),
    Column("revoked_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('active','revoked')", name="status"),
)


def _known_datasets(value: list[str]) -> list[str]:
    unknown = sorted(set(value) - DATASETS.keys())
    if unknown:
        raise ValueError(f"unknown datasets: {', '.join(unknown)}")
    if not value:
        raise ValueError("a key needs at least one dataset")
    return sorted(set(value))


def _district_codes(value: list[str]) -> list[str]:
    for code in value:
        if not DISTRICT_CODE.match(code):
            raise ValueError(f"district code {code!r} is not a 6-digit GB/T 2260 code")
    return sorted(set(value))


class KeyScope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    datasets: list[str] = Field(
        min_length=1, description="Datasets the key may read (GET /api/auth/datasets)"
    )
    all_districts: bool = Field(False, description="The whole deployment")
    districts: list[str] = Field(
        default_factory=list, max_length=200, description="GB/T 2260 codes"
    )

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, value: list[str]) -> list[str]:
        return _known_datasets(value)

    @field_validator("districts")
    @classmethod
    def _districts(cls, value: list[str]) -> list[str]:
        return _district_codes(value)


class ApiKeyCreate(KeyScope):
    name: str = Field(min_length=1, max_length=100, description="e.g. 智慧环保指挥中心")
    organisation: str | None = Field(None, max_length=200)
    contact: str | None = Field(None, max_length=200)
    expires_at: datetime = Field(description="Keys always expire (at most a year ahead)")
    rate_per_minute: int | None = Field(None, ge=1, le=100_000)
    quota_per_day: int | None = Field(None, ge=1, le=100_000_000)


class ApiKeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=100)
    organisation: str | None = Field(None, max_length=200)
    contact: str | None = Field(None, max_length=200)
    datasets: list[str] | None = None
    all_districts: bool | None = None
    districts: list[str] | None = None
    expires_at: datetime | None = None
    rate_per_minute: int | None = Field(None, ge=1, le=100_000)
    quota_per_day: int | None = Field(None, ge=1, le=100_000_000)

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _known_datasets(value)

    @field_validator("districts")
    @classmethod
    def _districts(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _district_codes(value)


class ApiKeyRead(BaseModel):
    id: str
    name: str
    organisation: str | None
    contact: str | None
    datasets: list[str]
    all_districts: bool
    districts: list[str]
    rate_per_minute: int
    quota_per_day: int
    expires_at: datetime
    status: Literal["active", "revoked"]
    replaced_by: str | None
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    revoked_at: datetime | None
    used_today: int | None = Field(None, description="Requests counted against today's quota")


class ApiKeyIssued(ApiKeyRead):
    key: str = Field(description="The key itself: shown this once, never again")


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_hours: int = Field(24, ge=0, le=720, description="The old key keeps working this long")
