"""Settings of the auth service (`ECOWATT_*` variables)."""

from __future__ import annotations

from ecowatt_kernel.settings import KernelSettings


class AuthSettings(KernelSettings):
    """EcoWatt auth and gateway settings."""

    service_name: str = "auth"
    http_port: int = 8001
