"""Settings of the registry service (`ECOWATT_*` variables)."""

from __future__ import annotations

from ecowatt_kernel.settings import KernelSettings


class RegistrySettings(KernelSettings):
    """EcoWatt registry (一企一档) settings."""

    service_name: str = "registry"
    http_port: int = 8002
    # Seed the synthetic city when the archive is empty at start-up. None: only in the
    # development environment (what `make run` uses).
    registry_seed_city: bool | None = None
    registry_seed: int = 20241
    registry_seed_enterprises: int = 200
    registry_seed_defect_share: float = 0.05
    # Re-publish every snapshot at start-up. None: when the bus is in-process (memory: its
    # logs are empty after a restart; disk: cheap insurance against a lost or restored bus
    # folder, and idempotent).
    registry_republish_on_start: bool | None = None
    registry_outbox_poll_s: float = 1.0

    @property
    def seeds_city(self) -> bool:
        if self.registry_seed_city is None:
            return self.environment == "development"
        return self.registry_seed_city

    @property
    def republishes_on_start(self) -> bool:
        if self.registry_republish_on_start is None:
            return self.bus_backend != "kafka"
        return self.registry_republish_on_start
