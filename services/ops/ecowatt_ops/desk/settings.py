"""Settings of the O&M desk (`ECOWATT_OPS_*`); `OpsSettings` inherits them."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from ecowatt_kernel.settings import KernelSettings
from pydantic import SecretStr, model_validator

__all__ = ["DeskSettings"]


class DeskSettings(KernelSettings):
    """The desk's clocks, escalation, platform signals, notifications and reports."""

    ops_alertmanager_token: SecretStr | None = None
    """Bearer token Alertmanager sends to `POST /alertmanager` (its `http_config.authorization`).
    Unset: the receiver refuses every call (fail closed)."""

    ops_critical_response_min: float = 5.0
    """非常严重 must be answered "at once" (立即响应); the clock gives it this many minutes."""
    ops_workday_start: time = time(9, 0)
    ops_workday_end: time = time(18, 0)
    """Working hours of a working day (local time): support requests' clocks run only then."""

    ops_escalation_warning: float = 0.75
    """Share of a clock's allowance after which the desk warns that its deadline is near."""
    ops_escalation_every_s: float = 30.0
    """How often open incidents and requests are checked against their deadlines."""

    ops_signals_enabled: bool = True
    """Open incidents from the platform's own status (services, lag, dead letters, devices)."""
    ops_signals_every_s: float = 30.0
    ops_signal_confirm_checks: int = 2
    """Consecutive checks a condition must hold (or be gone) before an incident opens (or the
    platform marks it recovered): a service restarting for a few seconds opens nothing."""
    ops_offline_drop_share: float = 0.2
    """Many devices offline at once: bound device sessions fell by this share or more below
    their highest count of the last `ops_offline_window_s` …"""
    ops_offline_min_devices: int = 20
    """… and that highest count was at least this many (a handful of test devices is noise)."""
    ops_offline_window_s: float = 3600.0
    ops_dlq_quiet_s: float = 900.0
    """A dead-letter incident recovers after its DLQ has not grown for this long."""

    ops_monthly_report: bool = True
    """Store the previous month's abnormal-event report on the 1st (local time, 00:15)."""

    ops_sms_url: str | None = None
    """HTTP SMS provider (POST JSON {phone, sign, text}); unset: messages go to the log."""
    ops_sms_api_key: SecretStr | None = None
    ops_sms_sign: str = "EcoWatt"
    ops_webhook_urls: tuple[str, ...] = ()
    """Webhooks told about every desk notification (JSON, signed with `ops_webhook_secret`)."""
    ops_webhook_secret: SecretStr | None = None
    ops_notify_timeout_s: float = 5.0

    ops_cjk_font: Path | None = None
    """TrueType CJK font embedded in PDF reports; unset: a Debian CJK font, else the CID font
    (`ecowatt_kernel.pdf`)."""

    @model_validator(mode="after")
    def _sane_desk(self) -> DeskSettings:
        if self.ops_workday_end <= self.ops_workday_start:
            raise ValueError("ECOWATT_OPS_WORKDAY_END must be after ECOWATT_OPS_WORKDAY_START")
        if not 0 < self.ops_escalation_warning < 1:
            raise ValueError("ECOWATT_OPS_ESCALATION_WARNING must lie between 0 and 1")
        if self.ops_signal_confirm_checks < 1:
            raise ValueError("ECOWATT_OPS_SIGNAL_CONFIRM_CHECKS must be at least 1")
        return self
