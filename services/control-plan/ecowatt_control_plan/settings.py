"""Settings of the control-plan service (`ECOWATT_*` variables)."""

from __future__ import annotations

from ecowatt_kernel.settings import KernelSettings


class ControlPlanSettings(KernelSettings):
    """EcoWatt control plans (重污染天气应急) settings."""

    service_name: str = "control-plan"
    http_port: int = 8006
