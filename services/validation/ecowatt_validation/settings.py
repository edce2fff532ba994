"""Settings of the validation service (`ECOWATT_*` variables)."""

from __future__ import annotations

from ecowatt_kernel.settings import KernelSettings


class ValidationSettings(KernelSettings):
    """EcoWatt validation (采集数据核查) settings."""

    service_name: str = "validation"
    http_port: int = 8004
