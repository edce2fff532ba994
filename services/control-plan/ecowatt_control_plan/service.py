"""The control-plan service definition: what `create_app` builds and standalone mode mounts."""

from __future__ import annotations

from pathlib import Path

from ecowatt_kernel.app import ServiceSpec

from ecowatt_control_plan.settings import ControlPlanSettings

SERVICE = ServiceSpec(
    name="control-plan",
    title="EcoWatt control plans (重污染天气应急)",
    description=(
        "Owns emission-reduction lists (一厂一策), alert orders, per-enterprise tasks and "
        "their compliance."
    ),
    settings_class=ControlPlanSettings,
    schema="control_plan",
    migrations=Path(__file__).parent / "migrations",
)
