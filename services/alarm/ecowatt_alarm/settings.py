"""Settings of the alarm service (`ECOWATT_*` variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from ecowatt_kernel.settings import KernelSettings
from pydantic import Field, SecretStr


class AlarmSettings(KernelSettings):
    """EcoWatt alarm settings. Rule thresholds live in the database (`alarm.rule`), not here."""

    service_name: str = "alarm"
    http_port: int = 8005

    # Topics (tests and benchmarks point them at private names).
    alarm_points_topic: str = "telemetry.points"
    alarm_registry_topic: str = "registry.changes"
    alarm_tasks_topic: str = "control.tasks"
    alarm_findings_topic: str = "quality.findings"
    alarm_states_topic: str = "facility.states"
    alarm_alarms_topic: str = "alarms"
    alarm_consumer_prefix: str = "alarm"

    # Worker processes (README "Several workers"): the service process is worker 0 and starts
    # workers 1…N−1, which divide the partitions of `telemetry.points` and `alarms` with it.
    # Kafka bus only: standalone (an in-process bus) runs one process.
    alarm_workers: Annotated[int, Field(ge=1, le=64)] = 1
    alarm_worker_index: int | None = None
    """Set by worker 0 for the workers it starts (not for operators)."""

    # Event time (docs/alarm-rules.md §6). A device from which nothing was received for
    # `lateness_s` (service clock) is silent: its enterprise is judged without it. Ten
    # minutes covers a partition or a device clock that lags by minutes, and costs at most
    # that long before a silent device's enterprise is judged on.
    alarm_lateness_s: float = 600.0
    # Samples applied after a checkpoint are kept this long (data time) for re-judging late
    # data; later back-fill is recorded but not judged again.
    alarm_reopen_horizon_s: float = 24 * 3600.0

    # Timers: silence (frontiers of silent devices) every `tick_s`; nightly learning.
    alarm_tick_s: float = 15.0
    alarm_nightly_at: str = "02:30"
    alarm_learning_days: int = 60
    alarm_stats_flush_s: float = 60.0
    # The engine's runtime row is written at once when a state, timer or alarm changes, and
    # at least this often otherwise (last values, accumulators).
    alarm_runtime_persist_s: float = 30.0

    # Attachments of enterprise feedback: PostgreSQL (default) or a folder.
    alarm_attachments_dir: Path | None = None
    alarm_attachment_max_bytes: int = 10 * 1024 * 1024
    alarm_attachment_max_count: int = 5
    alarm_attachment_types: tuple[str, ...] = (
        "image/jpeg",
        "image/png",
        "application/pdf",
        "text/plain",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    )

    # Excel exports of the alarm list: at most this many rows (a clear 422 beyond, stating
    # the cap: narrow the filters); the workbook is built off the event loop.
    alarm_export_max_rows: int = 50_000

    # Notifications.
    alarm_notify_enabled: bool = True
    alarm_webhook_urls: tuple[str, ...] = ()
    alarm_webhook_secret: SecretStr | None = None
    alarm_webhook_timeout_s: float = 5.0
    # Webhooks reach public addresses only; these CIDRs or host names are allowed besides
    # (an intranet endpoint of the bureau, say). Checked when a URL is stored and when called.
    alarm_webhook_allowed_networks: tuple[str, ...] = ()
    alarm_sms_provider: Literal["log", "http"] = "log"
    alarm_sms_url: str | None = None
    alarm_sms_api_key: SecretStr | None = None
    alarm_sms_sign: str = "EcoWatt"
    alarm_quiet_hours: str | None = "22:00-07:00"
    alarm_quiet_min_level: int = 3
    alarm_dedup_window_min: int = 60
    alarm_notify_min_level: int = 1

    @property
    def workers(self) -> int:
        """Worker processes in effect: one unless the bus is shared between processes."""
        return self.alarm_workers if self.bus_backend == "kafka" else 1

    @property
    def worker(self) -> int:
        """This process's worker number (0: the service process, with the API and the
        once-per-city jobs)."""
        return self.alarm_worker_index or 0
