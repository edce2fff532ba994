"""The auth service definition: what `create_app` builds and standalone mode mounts."""

from __future__ import annotations

from pathlib import Path

from ecowatt_kernel.app import ServiceSpec

from ecowatt_auth.settings import AuthSettings

SERVICE = ServiceSpec(
    name="auth",
    title="EcoWatt auth and gateway",
    description=(
        "Owns users, roles, data scopes, API keys, sessions and the audit log; the "
        "gateway every request passes (authentication, rate limits, audit, forwarding a "
        "signed identity to the services)."
    ),
    settings_class=AuthSettings,
    schema="auth",
    migrations=Path(__file__).parent / "migrations",
)
