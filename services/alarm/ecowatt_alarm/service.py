"""The alarm service definition: what `create_app` builds and standalone mode mounts."""

from __future__ import annotations

from pathlib import Path

from ecowatt_kernel.app import ServiceSpec

from ecowatt_alarm.settings import AlarmSettings

SERVICE = ServiceSpec(
    name="alarm",
    title="EcoWatt alarm",
    description=(
        "Owns point and facility states, production–control correlation alarms, the alarm "
        "handling journal, planned-outage filings and notifications."
    ),
    settings_class=AlarmSettings,
    schema="alarm",
    migrations=Path(__file__).parent / "migrations",
)
