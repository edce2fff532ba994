"""Settings of the reporting service (`ECOWATT_*` variables)."""

from __future__ import annotations

from ecowatt_kernel.settings import KernelSettings


class ReportingSettings(KernelSettings):
    """EcoWatt reporting settings."""

    service_name: str = "reporting"
    http_port: int = 8007
