"""The ops service definition: what `create_app` builds and standalone mode mounts."""

from __future__ import annotations

from pathlib import Path

from ecowatt_kernel.app import ServiceSpec

from ecowatt_ops.clocks.views import router as clocks
from ecowatt_ops.desk.runtime import start_desk, stop_desk
from ecowatt_ops.escalation.views import router as escalation
from ecowatt_ops.incidents.views import router as incidents
from ecowatt_ops.kb.views import router as kb
from ecowatt_ops.reports.views import router as reports
from ecowatt_ops.settings import OpsSettings
from ecowatt_ops.signals.views import router as signals
from ecowatt_ops.status.views import router as status
from ecowatt_ops.support.views import router as support

__all__ = ["SERVICE"]

SERVICE = ServiceSpec(
    name="ops",
    title="EcoWatt ops",
    description=(
        "The platform's own health for the status page: readiness of every service, "
        "consumer lag per group, dead-letter depth, PostgreSQL and Redis, device links; and "
        "the O&M desk: incidents with the tender's clocks, support requests on working "
        "time, abnormal-event reports, the maintenance knowledge base."
    ),
    settings_class=OpsSettings,
    schema="ops",
    migrations=Path(__file__).parent / "migrations",
    routers=[status, incidents, support, kb, reports, escalation, clocks, signals],
    on_startup=start_desk,
    on_shutdown=stop_desk,
)
