"""Typed settings, read once from `ECOWATT_*` environment variables.

Each service subclasses `KernelSettings` with its own fields; `load_settings(cls)` reads the
environment once per class. Secrets default to placeholders that start with
`dev-insecure-`; outside the development and test environments a placeholder is refused at
start-up, so a production process cannot run with a known secret.

Fail closed: `ECOWATT_ENVIRONMENT` has no default. A process started without it (or without
an `environment=` argument) refuses to start with `MissingEnvironmentError`, so a production
host that forgot it cannot fall back silently to the development key or the synthetic city.
`make run` sets `development`, `make test`, `make token` sets `development`, the benchmarks
and the test fixtures set `test`.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ecowatt_kernel.errors import ConfigurationError

__all__ = [
    "DEV_PLACEHOLDER_PREFIX",
    "ENVIRONMENTS",
    "KernelSettings",
    "MissingEnvironmentError",
    "PlaceholderSecretError",
    "load_settings",
    "settings_or_exit",
]

DEV_PLACEHOLDER_PREFIX = "dev-insecure-"

Environment = Literal["development", "test", "production"]
ENVIRONMENTS: tuple[str, ...] = ("development", "test", "production")


class PlaceholderSecretError(ConfigurationError):
    """A development placeholder secret was configured outside development or test."""


class MissingEnvironmentError(ConfigurationError):
    """ECOWATT_ENVIRONMENT is not set: the process refuses to guess which one it is."""

    def __init__(self) -> None:
        super().__init__(
            "ECOWATT_ENVIRONMENT is not set: set it to production for a deployment "
            "(development and test are for `make run` and `make test`, which set it); "
            "refusing to start rather than fall back to the development key and city"
        )


class KernelSettings(BaseSettings):
    """Settings every EcoWatt process shares. Variables are `ECOWATT_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="ECOWATT_", extra="ignore", frozen=True)

    # No usable default: `_require_environment` refuses a missing value (fail closed).
    environment: Environment = Field(default=None, validate_default=True)
    service_name: str = "ecowatt"
    instance_id: str = "local"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    # HJ 212 DataTime is local time of the deployment; everything stored is UTC.
    timezone: str = "Asia/Shanghai"

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # Largest request body a route takes unless it declares its own (uploads do): JSON
    # bodies are small, so 1 MiB leaves room and refuses a memory-filling body with a 413.
    http_max_body_bytes: int = 1024 * 1024
    # Workers 1…N−1 of a service (`ECOWATT_<SERVICE>_WORKERS`) have no HTTP port: worker k
    # serves `/metrics` on this port + k − 1 so Prometheus scrapes their consumers too; 0:
    # none (one worker needs none, and two services on a host must not collide by default).
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)

    bus_backend: Literal["kafka", "memory", "disk"] = "kafka"
    # The durable in-process bus (`disk`, standalone's default; see the kernel README).
    bus_disk_dir: Path = Path(".data/bus")
    bus_disk_retention_bytes: int = 2**30
    bus_disk_retention_hours: float = 168.0
    bus_disk_checkpoint_bytes: int = 64 * 2**20
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # Messages allowed in flight to the broker before publish() waits (backpressure).
    kafka_max_in_flight: int = 20_000
    kafka_linger_ms: int = 5
    kafka_compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = "lz4"
    kafka_replication_factor: int = 1
    bus_max_attempts: int = 3

    # Secrets: URLs may carry passwords, so they are SecretStr and never logged.
    database_url: SecretStr = SecretStr("postgresql://ecowatt@127.0.0.1:5432/ecowatt")
    database_pool_size: int = 10
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")

    # Ed25519 keys (PEM) for identity tokens. Services need the public key only; the auth
    # service also holds the private key. The placeholders select a development key pair.
    identity_public_key: SecretStr = SecretStr(DEV_PLACEHOLDER_PREFIX + "identity-public-key")
    identity_private_key: SecretStr = SecretStr(DEV_PLACEHOLDER_PREFIX + "identity-private-key")
    identity_issuer: str = "ecowatt-auth"
    identity_audience: str = "ecowatt"
    # Where services fetch the auth service's public keys (JWKS), so that a rotated signing
    # key is trusted without a restart; empty: only ECOWATT_IDENTITY_PUBLIC_KEY.
    identity_jwks_url: str | None = None
    identity_jwks_refresh_s: float = 300.0
    # No identity token lives longer: signers refuse to issue one, verifiers to accept one.
    # 12 h covers a working shift (the absolute session timeout) and `make token`.
    identity_max_token_lifetime_s: int = 12 * 3600

    @model_validator(mode="before")
    @classmethod
    def _require_environment(cls, values: object) -> object:
        if isinstance(values, dict) and values.get("environment") in (None, ""):
            raise MissingEnvironmentError()
        return values

    @model_validator(mode="after")
    def _refuse_placeholders_outside_development(self) -> KernelSettings:
        if self.environment in ("development", "test"):
            return self
        placeholders = [
            name
            for name, value in self
            if isinstance(value, SecretStr)
            and value.get_secret_value().startswith(DEV_PLACEHOLDER_PREFIX)
            and name not in self.placeholders_allowed_in_production()
            and not (name == "identity_public_key" and self.identity_jwks_url)
        ]
        if placeholders:
            variables = ", ".join(f"ECOWATT_{name.upper()}" for name in placeholders)
            raise PlaceholderSecretError(
                f"development placeholder secrets are not allowed in {self.environment}: "
                f"set {variables}"
            )
        return self

    @classmethod
    def placeholders_allowed_in_production(cls) -> frozenset[str]:
        """Secret fields this process never uses (e.g. the signing key outside auth)."""
        return frozenset({"identity_private_key"})

    @property
    def is_development(self) -> bool:
        return self.environment in ("development", "test")


SettingsT = TypeVar("SettingsT", bound=KernelSettings)


@functools.cache
def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Read the environment once per settings class."""
    return cls()


def settings_or_exit(cls: type[SettingsT]) -> SettingsT:
    """The settings of a process entry point; when they are refused (no environment, a
    placeholder secret in production, a bad value) the process exits with the reasons."""
    try:
        return cls()
    except ValidationError as exc:
        reasons = "; ".join(
            str(error["msg"]).removeprefix("Value error, ") for error in exc.errors()
        )
        sys.exit(f"ecowatt: refusing to start: {reasons}")
