"""The validation service definition: what `create_app` builds and standalone mode mounts."""

from __future__ import annotations

from pathlib import Path

from ecowatt_kernel.app import ServiceSpec

from ecowatt_validation.settings import ValidationSettings

SERVICE = ServiceSpec(
    name="validation",
    title="EcoWatt validation (采集数据核查)",
    description=(
        "Owns binding readings to monitoring points, data-quality state, archive- "
        "completeness and data-quality findings, daily per-point aggregates."
    ),
    settings_class=ValidationSettings,
    schema="validation",
    migrations=Path(__file__).parent / "migrations",
)
