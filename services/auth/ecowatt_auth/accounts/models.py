"""Accounts: tables and API models. Password hashes and TOTP secrets never leave the service."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from ecowatt_kernel.identity import Role
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from ecowatt_auth.authz.roles import ACCOUNT_ROLES, ROLES, ScopeKind
from ecowatt_auth.database import metadata

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{2,63}$")
DISTRICT_CODE = re.compile(r"^\d{6}$")
PHONE = re.compile(r"^\+?[0-9 -]{5,20}$")

user = Table(
    "user",
    metadata,
    Column("id", Text, primary_key=True),
    Column("username", Text, nullable=False, unique=True),
    Column("display_name", Text, nullable=False),
    Column("phone", Text),
    Column("email", Text),
    Column("organisation", Text),
    Column("role", Text, nullable=False),
    Column("scope_kind", Text, nullable=False),
    Column("districts", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("enterprises", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("om_company", Text),
    Column("status", Text, nullable=False, server_default=text("'active'")),
    Column("account_expires_at", DateTime(timezone=True)),
    Column("password_hash", Text, nullable=False),
    Column("password_changed_at", DateTime(timezone=True), nullable=False),
    Column("must_change_password", Boolean, nullable=False, server_default=text("true")),
    Column("totp_secret", Text),
    Column("totp_enabled", Boolean, nullable=False, server_default=text("false")),
    Column("totp_last_step", BigInteger),
    Column("locked_until", DateTime(timezone=True)),
    Column("not_before", DateTime(timezone=True)),
    Column("last_login_at", DateTime(timezone=True)),
    Column("last_login_ip", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_by", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_by", Text),
    CheckConstraint("status IN ('active','disabled')", name="status"),
    CheckConstraint(
        "scope_kind IN ('city','districts','enterprises','om_company')", name="scope_kind"
    ),
)

password_history = Table(
    "password_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("user_id", Text, ForeignKey("user.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

known_address = Table(
    "known_address",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("address", Text, primary_key=True),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("logins", Integer, nullable=False, server_default=text("1")),
)


class Scope(BaseModel):
    """An account's data scope (数据范围)."""

    model_config = ConfigDict(extra="forbid")

    kind: ScopeKind = Field(
        description="city: the whole deployment; districts: GB/T 2260 codes (a code ending "
        "in 00 covers its children); enterprises: enterprise ids; om_company: every "
        "enterprise whose archive names this O&M company (运维单位), resolved at login"
    )
    districts: list[str] = Field(default_factory=list, max_length=200)
    enterprises: list[str] = Field(default_factory=list, max_length=2000)
    om_company: str | None = Field(None, max_length=200)

    @field_validator("districts")
    @classmethod
    def _districts(cls, value: list[str]) -> list[str]:
        for code in value:
            if not DISTRICT_CODE.match(code):
                raise ValueError(f"district code {code!r} is not a 6-digit GB/T 2260 code")
        return sorted(set(value))

    @field_validator("enterprises")
    @classmethod
    def _enterprises(cls, value: list[str]) -> list[str]:
        for key in value:
            if not 1 <= len(key) <= 64 or not key.isprintable():
                raise ValueError(f"enterprise id {key!r} is not an id")
        return sorted(set(value))

    @model_validator(mode="after")
    def _complete(self) -> Scope:
        if self.kind == "districts" and not self.districts:
            raise ValueError("a districts scope needs at least one district code")
        if self.kind == "enterprises" and not self.enterprises:
            raise ValueError("an enterprises scope needs at least one enterprise id")
        if self.kind == "om_company" and not self.om_company:
            raise ValueError("an om_company scope needs the O&M company's name")
        return self


def _text(value: str | None, what: str) -> str | None:
    if value is not None and not value.isprintable():
        raise ValueError(f"{what} contains control characters")
    return value


class _ContactChecks(BaseModel):
    """Text fields without control characters, a phone number that is one."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("display_name", "organisation", "email", check_fields=False)
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return _text(value, "the text")

    @field_validator("phone", check_fields=False)
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and not PHONE.match(value):
            raise ValueError("phone must be digits (optionally +, spaces, dashes)")
        return value


class UserFields(_ContactChecks):
    display_name: str = Field(min_length=1, max_length=100, description="姓名")
    phone: str | None = Field(None, max_length=20, description="手机号")
    email: str | None = Field(None, max_length=200)
    organisation: str | None = Field(None, max_length=200, description="单位")
    role: Role = Field(description="One of the account roles (see GET /roles)")
    scope: Scope
    account_expires_at: datetime | None = Field(
        None, description="The account stops working at this time (账号有效期)"
    )

    @model_validator(mode="after")
    def _role_and_scope(self) -> UserFields:
        check_role_scope(self.role, self.scope.kind)
        return self


def check_role_scope(role: Role, kind: str) -> None:
    """ValueError unless accounts of `role` may have a `kind` scope."""
    if role not in ACCOUNT_ROLES:
        raise ValueError(f"role {role.value} is not for accounts")
    allowed = ROLES[role].scopes
    if kind not in allowed:
        raise ValueError(f"role {role.value} takes a scope of: {', '.join(allowed)}")


class UserCreate(UserFields):
    username: str = Field(description="Login name: 3-64 of a-z 0-9 . _ @ -, lower case")
    password: SecretStr | None = Field(
        None,
        description="Initial password; omitted: a random one is generated and returned once. "
        "The user must change it at first login.",
    )

    @field_validator("username", mode="before")
    @classmethod
    def _username(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if not USERNAME.match(value):
                raise ValueError("user name: 3-64 of a-z 0-9 . _ @ -, starting with a letter/digit")
        return value


class UserUpdate(_ContactChecks):
    """Fields to change; omitted ones stay."""

    display_name: str | None = Field(None, min_length=1, max_length=100)
    phone: str | None = Field(None, max_length=20)
    email: str | None = Field(None, max_length=200)
    organisation: str | None = Field(None, max_length=200)
    role: Role | None = None
    scope: Scope | None = None
    account_expires_at: datetime | None = None
    status: Literal["active", "disabled"] | None = None


class UserRead(BaseModel):
    id: str
    username: str
    display_name: str
    phone: str | None
    email: str | None
    organisation: str | None
    role: Role
    role_name: str
    scope: Scope
    status: Literal["active", "disabled"]
    account_expires_at: datetime | None
    locked_until: datetime | None
    must_change_password: bool
    password_changed_at: datetime
    password_expires_at: datetime | None
    totp_enabled: bool
    last_login_at: datetime | None
    last_login_ip: str | None
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    updated_by: str | None


class UserCreated(UserRead):
    initial_password: str | None = Field(
        None, description="Only when the server generated it: shown this once, never again"
    )


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: SecretStr | None = Field(
        None, description="The new initial password; omitted: generated and returned once"
    )


class PasswordResetDone(BaseModel):
    initial_password: str | None = None
    must_change_password: bool = True


class RoleRead(BaseModel):
    role: Role
    name: str
    name_en: str
    description: str
    scopes: list[str]
