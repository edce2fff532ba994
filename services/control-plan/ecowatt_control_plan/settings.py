"""Settings of the control-plan service (`ECOWATT_*` variables).

Compliance tolerances are not settings: they are written down in `compliance/rules.py` and
`docs/control-plans.md`, so that every deployment judges by the same published rule.
"""

from __future__ import annotations

from ecowatt_kernel.settings import KernelSettings


class ControlPlanSettings(KernelSettings):
    """EcoWatt control plans (重污染天气应急) settings."""

    service_name: str = "control-plan"
    http_port: int = 8006

    # Topics (tests and benchmarks point them at private names).
    control_plan_points_topic: str = "telemetry.points"
    control_plan_registry_topic: str = "registry.changes"
    control_plan_tasks_topic: str = "control.tasks"
    control_plan_compliance_topic: str = "control.compliance"
    control_plan_audit_topic: str = "audit.events"
    control_plan_consumer_prefix: str = "control-plan"

    control_plan_pass_enabled: bool = True
    """Run the compliance pass periodically (tests run it themselves: `POST /compliance/run`)."""
    control_plan_pass_every_s: float = 300.0
    """How often the compliance pass runs: it finalises hours that ended more than
    `grace_min` ago and re-judges the hour in progress (provisional, shown in the API)."""
    control_plan_grace_min: int = 10
    """Minutes after an hour's end before it is judged for good (late uploads)."""
    control_plan_rejudge_hours: int = 24
    """A judged hour whose readings change later (backfill) is judged again this long."""

    control_plan_baseline_days: int = 14
    """Normal days whose same hour gives a point's baseline (median)."""
    control_plan_baseline_window_days: int = 42
    """How far back normal days are looked for."""
    control_plan_baseline_min_days: int = 3
    """Fewer normal days than this: the documented fallback (learned running power)."""
    control_plan_minute_retention_days: int = 3
    """Minute values are kept this long; hourly summaries (baselines) much longer."""
    control_plan_hour_retention_days: int = 90

    control_plan_require_second_approver: bool = True
    """Four eyes: the person who proposes an order, an amendment or a lift cannot approve it."""
    control_plan_outbox_poll_s: float = 1.0

    control_plan_seed_list: bool | None = None
    """Generate a synthetic reduction list for the archive when the list is empty. None: in
    the development environment (`make run`)."""
    control_plan_seed: int = 20241

    @property
    def seeds_list(self) -> bool:
        if self.control_plan_seed_list is None:
            return self.environment == "development"
        return self.control_plan_seed_list
