"""Settings of the registry service (`ECOWATT_*` variables)."""

from __future__ import annotations

from ecowatt_kernel.settings import KernelSettings


class RegistrySettings(KernelSettings):
    """EcoWatt registry (一企一档) settings."""

    service_name: str = "registry"
    http_port: int = 8002
