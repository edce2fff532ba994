"""Login, session, token and password-change API models (the SPA codes against these)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ecowatt_kernel.identity import Role
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ecowatt_auth.accounts.models import Scope


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64, description="登录名")
    password: SecretStr = Field(min_length=1, max_length=128, description="密码")
    totp_code: str | None = Field(
        None,
        min_length=6,
        max_length=6,
        pattern=r"^\d{6}$",
        description="动态口令 (6 digits), when the account has a second factor",
    )


class PasswordChange(Credentials):
    """Change one's password with the current credentials (also when it expired or is the
    initial one, which is why this endpoint needs no session)."""

    new_password: SecretStr = Field(min_length=1, max_length=128, description="新密码")


class Me(BaseModel):
    """The logged-in person as the SPA shows them."""

    id: str
    username: str | None
    display_name: str | None
    kind: Literal["user", "api_key", "service"]
    role: Role | None
    role_name: str | None
    roles: list[Role]
    scope: Scope | None
    effective_districts: list[str]
    effective_enterprises: list[str]
    all_data: bool
    totp_enabled: bool = False
    password_expires_at: datetime | None = None


class SessionInfo(BaseModel):
    """A browser session (the cookie itself is HttpOnly; the SPA keeps `csrf_token`)."""

    user: Me
    csrf_token: str = Field(description="Send it back as `X-CSRF-Token` on POST/PUT/PATCH/DELETE")
    created_at: datetime
    expires_at: datetime = Field(description="Absolute end of the session")
    idle_timeout_s: int = Field(description="The session ends after this much inactivity")


class TokenIssued(BaseModel):
    """A bearer token for scripts: `Authorization: Bearer <access_token>`."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme's name
    expires_in: int
    expires_at: datetime


class TotpSetup(BaseModel):
    secret: str = Field(description="Base32 secret; enter it in an authenticator app")
    otpauth_uri: str = Field(description="The same as a URI (show it as a QR code)")


class TotpCode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^\d{6}$")


class TotpDisable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: SecretStr = Field(min_length=1, max_length=128)
    code: str = Field(pattern=r"^\d{6}$")
