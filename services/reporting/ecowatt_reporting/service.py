"""The reporting service definition: what `create_app` builds and standalone mode mounts."""

from __future__ import annotations

from pathlib import Path

from ecowatt_kernel.app import ServiceSpec

from ecowatt_reporting.settings import ReportingSettings

SERVICE = ServiceSpec(
    name="reporting",
    title="EcoWatt reporting",
    description=(
        "Owns telemetry history and its rollups (15-minute, hourly, daily), report "
        "definitions and the generated daily, weekly and monthly reports."
    ),
    settings_class=ReportingSettings,
    schema="reporting",
    migrations=Path(__file__).parent / "migrations",
)
