"""Devices (数采仪): table and API models. The password is write-only."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ecowatt_kernel.contracts.registry import Snapshot
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from sqlalchemy import CheckConstraint, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from ecowatt_registry import validation
from ecowatt_registry.database import Base, Revisioned
from ecowatt_registry.schemas import partial_model

DEFAULT_PROFILE = "ecowatt-default"


class Device(Revisioned, Base):
    __tablename__ = "device"
    __table_args__ = (
        CheckConstraint("status IN ('active','disabled','removed')", name="status"),
        CheckConstraint("protocol_version IN ('2005','2017','2025')", name="protocol_version"),
        CheckConstraint(
            "crc_variant IN ('standard','modbus_hi_lo','modbus_lo_hi')", name="crc_variant"
        ),
    )

    mn: Mapped[str] = mapped_column(Text, primary_key=True)
    enterprise_id: Mapped[str | None] = mapped_column(Text, ForeignKey("enterprise.id"), index=True)
    name: Mapped[str | None] = mapped_column(Text)
    password_hash: Mapped[str | None] = mapped_column(Text)
    protocol_version: Mapped[str] = mapped_column(Text, nullable=False, default="2017")
    electricity_profile: Mapped[str] = mapped_column(Text, nullable=False, default=DEFAULT_PROFILE)
    crc_variant: Mapped[str] = mapped_column(Text, nullable=False, default="standard")
    status: Mapped[str] = mapped_column(Text, nullable=False, default="active")
    rtd_interval_s: Mapped[int | None] = mapped_column(Integer)


class DeviceFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enterprise_id: str | None = None
    name: str | None = Field(None, max_length=200)
    protocol_version: Literal["2005", "2017", "2025"] = "2017"
    electricity_profile: str = Field(DEFAULT_PROFILE, min_length=1, max_length=64)
    crc_variant: Literal["standard", "modbus_hi_lo", "modbus_lo_hi"] = "standard"
    status: Literal["active", "disabled", "removed"] = "active"
    rtd_interval_s: int | None = Field(None, ge=1, le=86_400)


class DeviceCreate(DeviceFields):
    mn: str = Field(description="HJ 212 MN (up to 24 characters); the device's id")
    password: SecretStr | None = Field(
        None, description="HJ 212 PW (write-only; stored as a scrypt hash, never returned)"
    )
    reason: str | None = Field(None, max_length=500)

    @field_validator("mn")
    @classmethod
    def _mn(cls, value: str) -> str:
        if problem := validation.mn_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not 1 <= len(value.get_secret_value()) <= 9:
            raise ValueError("PW must be 1-9 characters (HJ 212: 6)")
        return value


class DeviceUpdate(partial_model(DeviceFields, "DevicePatch")):  # type: ignore[misc]
    reason: str | None = Field(None, max_length=500)


class PasswordChange(BaseModel):
    password: SecretStr = Field(description="New HJ 212 PW (6 characters usual)")
    reason: str | None = Field(None, max_length=500)

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr) -> SecretStr:
        if not 1 <= len(value.get_secret_value()) <= 9:
            raise ValueError("PW must be 1-9 characters (HJ 212: 6)")
        return value


class DeviceRead(Snapshot):
    """A device as the API shows it: never its password or hash."""

    mn: str
    enterprise_id: str | None = None
    name: str | None = None
    has_password: bool
    protocol_version: str
    electricity_profile: str
    crc_variant: str
    status: str
    rtd_interval_s: int | None = None
    point_count: int = 0
    revision: int
    created_at: datetime
    created_by: str | None = None
    updated_by: str | None = None
