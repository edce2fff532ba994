"""Settings of the alarm service (`ECOWATT_*` variables)."""

from __future__ import annotations

from ecowatt_kernel.settings import KernelSettings


class AlarmSettings(KernelSettings):
    """EcoWatt alarm settings."""

    service_name: str = "alarm"
    http_port: int = 8005
