"""The registry service definition: what `create_app` builds and standalone mode mounts."""

from __future__ import annotations

from pathlib import Path

from ecowatt_kernel.app import ServiceSpec

from ecowatt_registry.settings import RegistrySettings

SERVICE = ServiceSpec(
    name="registry",
    title="EcoWatt registry (一企一档)",
    description=(
        "Owns the enterprise archive: enterprises, production lines, production and "
        "control facilities, control groups (产治关系), monitoring points, devices and "
        "thresholds, with the history of every change."
    ),
    settings_class=RegistrySettings,
    schema="registry",
    migrations=Path(__file__).parent / "migrations",
)
