"""Who is calling, and which data they may see.

The gateway (`services/auth`) authenticates people and partners and forwards a short-lived
token signed with its Ed25519 key. Every service verifies that token with the public key —
services never trust an unsigned header, and cannot mint tokens themselves. The token carries
the user id, roles and data scope; its header names the signing key (`kid`, see `jwks`), and
no token lives longer than `ECOWATT_IDENTITY_MAX_TOKEN_LIFETIME_S` (signers refuse to issue
one, verifiers refuse to accept one):

    scope = all                       the whole deployment (city bureau, administrators)
          | districts [610102, …]     GB/T 2260 codes; a code ending in 00 covers its children
          | enterprises [id, …]       an enterprise user's own enterprise(s)

A district in a scope must be a known GB/T 2260 code (`known_district_codes()`, from the
kernel's `data/gbt2260-shaanxi.csv`, provenance in `data/SOURCES.md`): a token naming any
other code is refused (401), so a typo cannot widen or silently empty a scope. A province
code (…0000) covers every code with its two-digit prefix, a city code (…00) every code with
its four-digit prefix, a county code itself only; `allows()` (one record, in Python) and
`where()` (SQL) apply exactly that rule, and a property test holds them equal for every
scope and record against PostgreSQL.

A partner's API key also carries its **datasets** (claim `datasets`, `Identity.datasets`):
the names of the partner datasets it was granted (the auth service's permission matrix
lists them). Only `api_key` identities carry datasets — a token of any other kind that
names some is refused — so a service checks `identity.datasets` for a partner read as a
second line behind the gateway, which checks the key itself.

FastAPI dependencies: `CurrentIdentity` (401 when the token is missing, expired, tampered or
for another audience), `require_roles(...)` (403), and `CurrentScope`, whose `where()` turns
the scope into a SQL condition so that every query is filtered on the server.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from importlib import resources
from typing import Annotated, Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from sqlalchemy import ColumnElement, SQLColumnExpression, false, or_, true

from ecowatt_kernel.errors import EcoWattError
from ecowatt_kernel.jwks import JwksClient, KeySet, key_id, load_public_keys
from ecowatt_kernel.problems import Forbidden, Unauthorized
from ecowatt_kernel.settings import DEV_PLACEHOLDER_PREFIX, KernelSettings

__all__ = [
    "CurrentIdentity",
    "CurrentScope",
    "DataScope",
    "Identity",
    "InvalidTokenError",
    "KeySet",
    "Role",
    "TokenSigner",
    "TokenVerifier",
    "authenticate",
    "dev_key_pair",
    "district_condition",
    "identity_from_claims",
    "known_district_codes",
    "public_keys_from_settings",
    "require_roles",
    "signer_from_settings",
    "verifier_from_settings",
]

_ALGORITHM = "EdDSA"
DEFAULT_MAX_TOKEN_LIFETIME = timedelta(hours=12)


class Role(StrEnum):
    ADMIN = "admin"
    CITY_SUPERVISOR = "city_supervisor"
    DISTRICT_OFFICER = "district_officer"
    ENTERPRISE_USER = "enterprise_user"
    OM_OPERATOR = "om_operator"
    PARTNER = "partner"
    SERVICE = "service"
    AUDITOR = "auditor"


MAX_ENTERPRISE_ID_LENGTH = 128
MAX_DATASET_NAME_LENGTH = 64


@functools.cache
def known_district_codes() -> frozenset[str]:
    """The GB/T 2260 codes a district scope may name (kernel data, see the docstring)."""
    source = resources.files("ecowatt_kernel").joinpath("data/gbt2260-shaanxi.csv")
    with source.open(encoding="utf-8") as handle:
        return frozenset(row["code"] for row in csv.DictReader(handle))


class DataScope(BaseModel):
    """The data a caller may see."""

    model_config = ConfigDict(frozen=True)

    all: bool = False
    districts: frozenset[str] = frozenset()
    enterprises: frozenset[str] = frozenset()

    @field_validator("districts")
    @classmethod
    def _known_districts(cls, codes: frozenset[str]) -> frozenset[str]:
        unknown = sorted(code for code in codes if code not in known_district_codes())
        if unknown:
            shown = ", ".join(repr(code[:12]) for code in unknown[:5])
            raise ValueError(f"unknown GB/T 2260 district code(s) in scope: {shown}")
        return codes

    @field_validator("enterprises")
    @classmethod
    def _plain_enterprise_ids(cls, ids: frozenset[str]) -> frozenset[str]:
        for key in ids:
            if not key or len(key) > MAX_ENTERPRISE_ID_LENGTH or not key.isprintable():
                raise ValueError(f"invalid enterprise id in scope: {key[:40]!r}")
        return ids

    def allows(self, *, district: str | None = None, enterprise_id: str | None = None) -> bool:
        """True when a record of `district` / `enterprise_id` is visible (as `where()`)."""
        if self.all:
            return True
        if enterprise_id is not None and enterprise_id in self.enterprises:
            return True
        return district is not None and any(
            _district_covers(code, district) for code in self.districts
        )

    def where(
        self,
        *,
        district_column: SQLColumnExpression[Any] | None = None,
        enterprise_column: SQLColumnExpression[Any] | None = None,
    ) -> ColumnElement[bool]:
        """A SQL condition that keeps only the rows this scope may see."""
        if self.all:
            return true()
        conditions: list[ColumnElement[bool]] = []
        if enterprise_column is not None and self.enterprises:
            conditions.append(enterprise_column.in_(sorted(self.enterprises)))
        if district_column is not None and self.districts:
            conditions.append(district_condition(self.districts, district_column))
        return or_(*conditions) if conditions else false()


def district_condition(
    codes: Iterable[str], column: SQLColumnExpression[Any]
) -> ColumnElement[bool]:
    """SQL: `column` lies in one of the GB/T 2260 `codes` (the coverage rule of DataScope).

    For filters too (`?district=610100`), whose codes need not be known: an unknown code
    simply matches nothing it does not cover."""
    unique = sorted(set(codes))
    exact = [c for c in unique if _district_prefix(c) == c]
    conditions: list[ColumnElement[bool]] = [column.in_(exact)] if exact else []
    conditions.extend(
        column.startswith(_district_prefix(c), autoescape=True)
        for c in unique
        if _district_prefix(c) != c
    )
    return or_(*conditions) if conditions else false()


def _district_prefix(code: str) -> str:
    """610000 → 61, 610100 → 6101, 610102 → 610102 (GB/T 2260 levels)."""
    if len(code) == 6 and code.isdigit():
        if code.endswith("0000"):
            return code[:2]
        if code.endswith("00"):
            return code[:4]
    return code


def _district_covers(scope_code: str, district: str) -> bool:
    prefix = _district_prefix(scope_code)
    if prefix == scope_code:
        return district == scope_code  # a county covers itself only, as `where()`'s IN
    return district.startswith(prefix)


class Identity(BaseModel):
    """The verified caller of a request."""

    model_config = ConfigDict(frozen=True)

    subject: str
    kind: Literal["user", "api_key", "service"] = "user"
    name: str | None = None
    roles: frozenset[Role] = frozenset()
    scope: DataScope = DataScope()
    token_id: str | None = None
    expires_at: datetime | None = None
    datasets: frozenset[str] = frozenset()
    """The partner datasets an API key was granted (empty for every other kind)."""

    @field_validator("datasets")
    @classmethod
    def _plain_dataset_names(cls, names: frozenset[str]) -> frozenset[str]:
        for name in names:
            if not name or len(name) > MAX_DATASET_NAME_LENGTH or not name.isidentifier():
                raise ValueError(f"invalid dataset name: {name[:40]!r}")
        return names

    @model_validator(mode="after")
    def _datasets_only_for_keys(self) -> Identity:
        if self.datasets and self.kind != "api_key":
            raise ValueError(f"only API keys carry datasets, not a {self.kind} identity")
        return self

    def has_any_role(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))


class InvalidTokenError(EcoWattError):
    """The token cannot be trusted; `reason` says why in one short phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def dev_key_pair() -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    """The development key pair: derived from a public seed, so never valid in production."""
    seed = hashlib.sha256(b"ecowatt development identity key - not a secret").digest()
    private = Ed25519PrivateKey.from_private_bytes(seed)
    return private, private.public_key()


class TokenSigner:
    """Issues identity tokens (the auth service; tests use the development key)."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        *,
        issuer: str,
        audience: str,
        max_ttl: timedelta = DEFAULT_MAX_TOKEN_LIFETIME,
    ) -> None:
        self._key = private_key
        self.issuer = issuer
        self.audience = audience
        self.max_ttl = max_ttl
        self.public_key = private_key.public_key()
        self.kid = key_id(self.public_key)

    def sign(
        self,
        identity: Identity,
        *,
        ttl: timedelta = timedelta(minutes=15),
        now: datetime | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A token for `identity` valid for `ttl` (ValueError beyond the maximum lifetime)."""
        if ttl > self.max_ttl or ttl <= timedelta(0):
            raise ValueError(
                f"token lifetime {ttl} is outside (0, {self.max_ttl}] "
                "(ECOWATT_IDENTITY_MAX_TOKEN_LIFETIME_S)"
            )
        issued = now or datetime.now(UTC)
        claims = {
            **(extra or {}),
            "iss": self.issuer,
            "aud": self.audience,
            "sub": identity.subject,
            "iat": int(issued.timestamp()),
            "nbf": int(issued.timestamp()),
            "exp": int((issued + ttl).timestamp()),
            "jti": identity.token_id or secrets.token_hex(12),
            "kind": identity.kind,
            "name": identity.name,
            "roles": sorted(identity.roles),
            "scope": {
                "all": identity.scope.all,
                "districts": sorted(identity.scope.districts),
                "enterprises": sorted(identity.scope.enterprises),
            },
        }
        if identity.kind == "api_key":
            claims["datasets"] = sorted(identity.datasets)
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM, headers={"kid": self.kid})


class TokenVerifier:
    """Verifies identity tokens with the public key their `kid` names.

    The keys are a `KeySet` (one key or several during a rotation); with a `JwksClient` the
    set follows the auth service's JWKS document, refreshed when a token names an unknown
    kid (`verify_async`) and every few minutes.
    """

    def __init__(
        self,
        keys: Ed25519PublicKey | KeySet,
        *,
        issuer: str,
        audience: str,
        leeway_s: int = 5,
        max_lifetime: timedelta = DEFAULT_MAX_TOKEN_LIFETIME,
        jwks: JwksClient | None = None,
    ) -> None:
        self.keys = keys if isinstance(keys, KeySet) else KeySet([keys])
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.max_lifetime = max_lifetime
        self.jwks = jwks

    def key_of(self, token: str) -> str:
        """The kid a token names (InvalidTokenError when it names none or is not a JWT)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidTokenError(f"token is malformed: {exc}") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidTokenError("token names no signing key (kid)")
        return kid

    async def verify_async(self, token: str) -> Identity:
        """`verify`, after refreshing the JWKS when the token's kid is unknown or the keys
        are old (no network without a JWKS client)."""
        if self.jwks is not None:
            await self.jwks.maybe_refresh()
            if self.key_of(token) not in self.keys:
                await self.jwks.refresh()
        return self.verify(token)

    def verify(self, token: str) -> Identity:
        """Return the identity in `token`, or raise InvalidTokenError."""
        return identity_from_claims(self.claims(token))

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of `token`, or InvalidTokenError."""
        kid = self.key_of(token)
        key = self.keys.get(kid)
        if key is None:
            raise InvalidTokenError("token signed with an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[_ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("token expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidTokenError("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidTokenError("token from an unknown issuer") from None
        except jwt.InvalidSignatureError:
            raise InvalidTokenError("token signature is invalid") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidTokenError(f"token is malformed: {exc}") from None
        issued, expires = claims["iat"], claims["exp"]
        if not isinstance(issued, int | float) or not isinstance(expires, int | float):
            raise InvalidTokenError("token times are not numbers")
        if expires - issued > self.max_lifetime.total_seconds():
            raise InvalidTokenError("token lifetime exceeds the maximum")
        return claims


def identity_from_claims(claims: dict[str, Any]) -> Identity:
    """The Identity of verified claims (InvalidTokenError when they do not describe one)."""
    try:
        scope = claims.get("scope") or {}
        return Identity(
            subject=claims["sub"],
            kind=claims.get("kind", "user"),
            name=claims.get("name"),
            roles=frozenset(Role(r) for r in claims.get("roles", [])),
            scope=DataScope(
                all=bool(scope.get("all", False)),
                districts=frozenset(scope.get("districts", [])),
                enterprises=frozenset(scope.get("enterprises", [])),
            ),
            token_id=claims.get("jti"),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            datasets=_names(claims.get("datasets", [])),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidTokenError(f"token claims are invalid: {exc}") from None


def _names(value: Any) -> frozenset[str]:
    """A claim that must be a list of strings (TypeError otherwise: a bare string would
    otherwise become a set of its letters)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("datasets must be a list of names")
    return frozenset(value)


def _is_placeholder(value: str) -> bool:
    return value.startswith(DEV_PLACEHOLDER_PREFIX)


def public_keys_from_settings(settings: KernelSettings) -> list[Ed25519PublicKey]:
    """The public keys ECOWATT_IDENTITY_PUBLIC_KEY names (the development key for its
    placeholder; none when only a JWKS URL is configured)."""
    pem = settings.identity_public_key.get_secret_value()
    if _is_placeholder(pem):
        return (
            []
            if settings.identity_jwks_url and not settings.is_development
            else [dev_key_pair()[1]]
        )
    return load_public_keys(pem)


def verifier_from_settings(
    settings: KernelSettings, *, extra_keys: Iterable[Ed25519PublicKey] = ()
) -> TokenVerifier:
    """The verifier configured by ECOWATT_IDENTITY_PUBLIC_KEY (one or more PEM keys; dev key
    in development) and ECOWATT_IDENTITY_JWKS_URL (keys that follow rotations)."""
    static = [*public_keys_from_settings(settings), *extra_keys]
    keys = KeySet(static)
    jwks = None
    if settings.identity_jwks_url:
        jwks = JwksClient(
            settings.identity_jwks_url,
            keys,
            static=static,
            max_age_s=settings.identity_jwks_refresh_s,
        )
    return TokenVerifier(
        keys,
        issuer=settings.identity_issuer,
        audience=settings.identity_audience,
        max_lifetime=timedelta(seconds=settings.identity_max_token_lifetime_s),
        jwks=jwks,
    )


def signer_from_settings(settings: KernelSettings) -> TokenSigner:
    """The signer configured by ECOWATT_IDENTITY_PRIVATE_KEY (dev key in development)."""
    pem = settings.identity_private_key.get_secret_value()
    if _is_placeholder(pem):
        if not settings.is_development:
            raise ValueError("ECOWATT_IDENTITY_PRIVATE_KEY is required outside development")
        private, _ = dev_key_pair()
    else:
        loaded = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError("ECOWATT_IDENTITY_PRIVATE_KEY must be an Ed25519 private key (PEM)")
        private = loaded
    return TokenSigner(
        private,
        issuer=settings.identity_issuer,
        audience=settings.identity_audience,
        max_ttl=timedelta(seconds=settings.identity_max_token_lifetime_s),
    )


# -------------------------------------------------------------------------- FastAPI glue


def _verifier(request: Request) -> TokenVerifier:
    verifier = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise RuntimeError("app.state.token_verifier is not set (use the app factory)")
    return verifier  # type: ignore[no-any-return]


async def authenticate(request: Request) -> Identity:
    """Dependency: the verified identity of the request, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized("authentication required: send `Authorization: Bearer <token>`")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be `Bearer <token>`")
    try:
        identity = await _verifier(request).verify_async(token.strip())
    except InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc.reason}") from None
    request.state.identity = identity
    return identity


CurrentIdentity = Annotated[Identity, Depends(authenticate)]


def require_roles(*roles: Role) -> Any:
    """Dependency factory: 403 unless the caller has one of `roles` (admins always pass)."""

    async def check(identity: CurrentIdentity) -> Identity:
        if not identity.has_any_role(Role.ADMIN, *roles):
            wanted = ", ".join(sorted(r.value for r in roles))
            raise Forbidden(f"this action needs one of the roles: {wanted}")
        return identity

    return Depends(check)


async def _scope(identity: CurrentIdentity) -> DataScope:
    return identity.scope


CurrentScope = Annotated[DataScope, Depends(_scope)]
