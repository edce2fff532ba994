"""The ops service definition: what `create_app` builds and standalone mode mounts."""

from __future__ import annotations

from pathlib import Path

from ecowatt_kernel.app import ServiceSpec

from ecowatt_ops.settings import OpsSettings
from ecowatt_ops.status.views import router as status

__all__ = ["SERVICE"]

SERVICE = ServiceSpec(
    name="ops",
    title="EcoWatt ops",
    description=(
        "The platform's own health for the status page: readiness of every service, "
        "consumer lag per group, dead-letter depth, PostgreSQL and Redis, device links. "
        "The O&M desk grows here."
    ),
    settings_class=OpsSettings,
    schema="ops",
    migrations=Path(__file__).parent / "migrations",
    routers=[status],
)
