"""Settings of the ingest-hj212 service (`ECOWATT_*` variables)."""

from __future__ import annotations

from ecowatt_kernel.settings import KernelSettings


class IngestSettings(KernelSettings):
    """EcoWatt HJ 212 ingest settings."""

    service_name: str = "ingest-hj212"
    http_port: int = 8003
