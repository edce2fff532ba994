"""The ingest-hj212 service definition: what `create_app` builds and standalone mode mounts."""

from __future__ import annotations

from pathlib import Path

from ecowatt_kernel.app import ServiceSpec

from ecowatt_ingest.settings import IngestSettings

SERVICE = ServiceSpec(
    name="ingest-hj212",
    title="EcoWatt HJ 212 ingest",
    description=(
        "Owns TCP sessions with devices (port 9212), device online state in Redis, "
        "answers to devices after their frames are durable, reverse commands."
    ),
    settings_class=IngestSettings,
    schema="ingest",
    migrations=Path(__file__).parent / "migrations",
)
