"""Settings of the reporting service (`ECOWATT_*` variables)."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Literal

from ecowatt_kernel.settings import KernelSettings
from pydantic import SecretStr


class ReportingSettings(KernelSettings):
    """EcoWatt reporting settings."""

    service_name: str = "reporting"
    http_port: int = 8007

    # Topics (tests and benchmarks point them at private names).
    reporting_points_topic: str = "telemetry.points"
    reporting_states_topic: str = "facility.states"
    reporting_alarms_topic: str = "alarms"
    reporting_findings_topic: str = "quality.findings"
    reporting_compliance_topic: str = "control.compliance"
    reporting_registry_topic: str = "registry.changes"
    # Consumer groups are `<prefix>.history`, `<prefix>.events`, `<prefix>.registry-view.*`.
    reporting_consumer_prefix: str = "reporting"
    reporting_history_max_batch: int = 20000
    # Write several partitions' batches at once: one waits on PostgreSQL while another is
    # decoded (each partition stays in order; the writes are commutative anyway).
    reporting_history_concurrent_partitions: bool = True

    # History: raw samples are kept this many days (whole daily partitions are dropped);
    # rollups are kept (0 = forever) — reports read rollups, never raw rows.
    reporting_raw_retention_days: int = 400
    reporting_rollup_retention_days: int = 0
    # Partitions are created this many days ahead by the maintenance job, and on demand.
    reporting_partitions_ahead_days: int = 7
    # A point dated further than this into the future is refused (recorded, not stored):
    # a device clock gone wrong must not create partitions years ahead.
    reporting_future_tolerance_h: float = 26.0
    reporting_maintenance_every_s: float = 3600.0

    # Report schedule (local time, `timezone`): the daily report of the previous day, the
    # weekly report on Mondays, the monthly report on the 1st.
    reporting_schedule_enabled: bool = True
    reporting_daily_at: time = time(1, 0)
    reporting_catch_up_days: int = 3
    # Today's provisional daily report is regenerated this often (0 = never).
    reporting_today_every_min: float = 60.0
    # Handling deadlines used by the timeliness statistics (hours after an alarm opened).
    reporting_feedback_deadline_h: float = 24.0
    reporting_close_deadline_h: float = 72.0
    # An enterprise with at least this many alarms in a period is a repeat offender.
    reporting_repeat_offender_min: int = 3
    # CJK font for PDF reports; None: the first of Debian's fonts found (`make fonts`).
    reporting_cjk_font: Path | None = None
    # Development only: synthesise this many past days of history for the archive's points
    # at start-up when the history is empty, so that `make run` shows a full report for
    # yesterday. None: 1 in development, 0 otherwise. Never in production.
    reporting_demo_history_days: int | None = None
    reporting_demo_delay_s: float = 60.0

    # Subscription deliveries (the channels of `ecowatt_kernel.notify`).
    reporting_public_url: str = "http://127.0.0.1:8000/api/reporting"
    reporting_webhook_secret: SecretStr | None = None
    reporting_webhook_timeout_s: float = 5.0
    reporting_sms_provider: Literal["log", "http"] = "log"
    reporting_sms_url: str | None = None
    reporting_sms_api_key: SecretStr | None = None
    reporting_sms_sign: str = "EcoWatt"

    @property
    def demo_history_days(self) -> int:
        if self.environment == "production":
            return 0
        if self.reporting_demo_history_days is None:
            return 1 if self.environment == "development" else 0
        return max(self.reporting_demo_history_days, 0)
