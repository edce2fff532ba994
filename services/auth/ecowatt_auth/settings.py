"""Settings of the auth service and gateway (`ECOWATT_*` variables).

Defaults follow China's 等保 2.0 level 3 (GB/T 22239-2019, 8.1.4.1 身份鉴别 and 8.1.4.2 访问控制)
where it speaks, and common practice where it does not; each choice has its reason beside it.
"""

from __future__ import annotations

from ecowatt_kernel.settings import DEV_PLACEHOLDER_PREFIX, KernelSettings
from pydantic import SecretStr, model_validator

DEFAULT_UPSTREAMS = {
    "registry": "http://127.0.0.1:8002",
    "ingest-hj212": "http://127.0.0.1:8003",
    "validation": "http://127.0.0.1:8004",
    "alarm": "http://127.0.0.1:8005",
    "control-plan": "http://127.0.0.1:8006",
    "reporting": "http://127.0.0.1:8007",
}


class AuthSettings(KernelSettings):
    """EcoWatt auth and gateway settings."""

    service_name: str = "auth"
    http_port: int = 8001

    # --- the gateway (distributed mode: `python -m ecowatt_auth`)
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    gateway_upstreams: dict[str, str] = DEFAULT_UPSTREAMS
    """Service name → base URL of its HTTP port; `/api/<name>/…` is proxied there."""
    gateway_connect_timeout_s: float = 2.0
    gateway_read_timeout_s: float = 60.0
    """Up to a minute: exports and imports of a whole archive take that long."""
    gateway_max_connections: int = 200
    gateway_audit_queue: int = 20_000
    """Audit events waiting for the bus; beyond it the gateway refuses requests (503)."""
    gateway_web_dir: str | None = None
    """Folder of the SPA build (index.html); unset: `web/dist` when it exists, else the
    built-in login page."""
    gateway_trusted_proxies: tuple[str, ...] = ()
    """Networks of reverse proxies (ingress, load balancer) whose `X-Forwarded-For` the
    gateway believes; the caller is the nearest address outside them. Empty: the peer."""
    gateway_public_docs: bool = True
    """Serve the merged OpenAPI document and its viewer without credentials (partners read
    it before they hold a key; it names endpoints, never data)."""

    # --- sessions (SPA) and tokens (scripts)
    auth_cookie_secure: bool = True
    """Secure cookies (HTTPS only). Standalone development turns it off because `make run`
    serves plain HTTP on the loopback interface; production refuses `false`."""
    auth_session_idle_s: int = 30 * 60
    """等保: a session idle for 30 minutes ends (登录连接超时自动退出)."""
    auth_session_absolute_s: int = 12 * 3600
    """A session ends 12 h after login whatever happens: a working shift."""
    auth_access_token_s: int = 3600
    """Bearer tokens from `POST /api/auth/token` (scripts): one hour, then log in again."""
    auth_forward_token_s: int = 120
    """Identity tokens the gateway mints for sessions and API keys, per request to a service."""

    # --- login protection and the password policy
    auth_lockout_failures: int = 5
    """Failed logins (per user name, counted over the lockout window) that lock it: 等保's
    限制非法登录次数; five is the usual figure in assessments."""
    auth_lockout_window_s: int = 15 * 60
    auth_lockout_s: int = 30 * 60
    auth_password_min_length: int = 10
    """等保 asks for complexity; 8 is the usual floor, we ask 10 with three character classes."""
    auth_password_min_classes: int = 3
    auth_password_history: int = 5
    """A new password may not repeat any of the last five."""
    auth_password_max_age_days: int = 90
    """等保: passwords are changed periodically (定期更换); 90 days, then a forced change."""
    auth_totp_issuer: str = "EcoWatt"
    auth_data_key: SecretStr = SecretStr(DEV_PLACEHOLDER_PREFIX + "auth-data-key")
    """Key (any text, ≥ 32 characters) that encrypts TOTP secrets at rest (AES-GCM)."""

    # --- first start
    admin_username: str = "admin"
    admin_password: SecretStr | None = None
    """The first administrator's password; unset: a random one printed once to the console."""

    # --- rate limits and partner quotas
    auth_rate_user_per_minute: int = 600
    """Requests per minute per person (a busy SPA page fires ~20; ten a second is plenty)."""
    auth_rate_anonymous_per_minute: int = 30
    """Requests per minute per address to public endpoints (login, key set)."""
    auth_api_key_rate_per_minute: int = 120
    auth_api_key_quota_per_day: int = 20_000

    # --- audit and security monitoring
    auth_audit_export_max_rows: int = 100_000
    auth_monitor_frames_topic: str = "hj212.frames"
    auth_monitor_audit_topic: str = "audit.events"
    auth_monitor_device_failure_reasons: tuple[str, ...] = ("bad_password",)
    auth_monitor_odd_hours: str = "00:00-06:00"
    """Local time; a successful login inside it raises a low-severity alert."""
    auth_monitor_brute_force_account: int = 10
    auth_monitor_brute_force_address: int = 20
    auth_monitor_brute_force_window_s: int = 600
    auth_monitor_denials: int = 10
    auth_monitor_denials_window_s: int = 600
    auth_monitor_exports: int = 30
    auth_monitor_exports_window_s: int = 3600
    auth_monitor_device_failures_per_device: int = 10
    auth_monitor_device_failures_platform: int = 100
    auth_monitor_device_failures_window_s: int = 300
    auth_alert_webhook_urls: tuple[str, ...] = ()
    auth_alert_webhook_secret: SecretStr | None = None
    auth_alert_sms_phones: tuple[str, ...] = ()
    auth_sms_url: str | None = None
    auth_sms_api_key: SecretStr | None = None
    auth_sms_sign: str = "EcoWatt"

    @model_validator(mode="after")
    def _secure_cookies_in_production(self) -> AuthSettings:
        if not self.is_development and not self.auth_cookie_secure:
            raise ValueError(
                "ECOWATT_AUTH_COOKIE_SECURE=false is only for plain-HTTP development on the "
                "loopback interface; production serves HTTPS and keeps cookies Secure"
            )
        return self

    @property
    def session_cookie(self) -> str:
        """`__Host-` binds the cookie to this host and path `/` (only allowed with Secure)."""
        return "__Host-ecowatt_session" if self.auth_cookie_secure else "ecowatt_session"

    @property
    def csrf_cookie(self) -> str:
        return "__Host-ecowatt_csrf" if self.auth_cookie_secure else "ecowatt_csrf"
