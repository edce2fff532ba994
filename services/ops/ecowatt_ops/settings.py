"""Settings of the ops service (`ECOWATT_*` variables, read once)."""

from __future__ import annotations

from ecowatt_ops.desk.settings import DeskSettings

__all__ = ["DEFAULT_SERVICE_URLS", "OpsSettings"]

# The distributed defaults of docs/operations.md: each service on its own port.
DEFAULT_SERVICE_URLS = (
    "auth=http://127.0.0.1:8001,"
    "registry=http://127.0.0.1:8002,"
    "ingest-hj212=http://127.0.0.1:8003,"
    "validation=http://127.0.0.1:8004,"
    "alarm=http://127.0.0.1:8005,"
    "control-plan=http://127.0.0.1:8006,"
    "reporting=http://127.0.0.1:8007"
)


class OpsSettings(DeskSettings):
    """EcoWatt ops settings (the status page's here, the desk's in `DeskSettings`)."""

    service_name: str = "ops"
    http_port: int = 8008

    ops_service_urls: str = DEFAULT_SERVICE_URLS
    """`name=base-url` pairs, comma-separated: where each service answers `/readyz` and
    `/metrics` (in a cluster: the Service names, e.g. `alarm=http://ecowatt-alarm:8005`)."""
    ops_local_metrics: bool | None = None
    """Read metrics from this process's registry instead of scraping each service; None: when
    the bus is in-process (standalone: every service shares this process's registry)."""
    ops_probe_timeout_s: float = 2.0
    """Per request to a service (`/readyz`, `/metrics`) and per storage check."""
    ops_cache_s: float = 5.0
    """A status is reused this long, so that many open status pages cost one round of checks."""
    ops_lag_warning: int = 10_000
    """Messages behind on one topic above which a consumer group makes the status degraded
    (one minute of a city's readings: 30,000 points report once a minute, 3 partitions)."""

    ops_dlq_topics: str = ""
    """Dead-letter topics to count, comma-separated; empty: every registered topic's `.dlq`."""

    @property
    def service_urls(self) -> dict[str, str]:
        pairs = (item.split("=", 1) for item in self.ops_service_urls.split(",") if "=" in item)
        return {name.strip(): url.strip().rstrip("/") for name, url in pairs if name.strip()}

    @property
    def reads_local_metrics(self) -> bool:
        if self.ops_local_metrics is None:
            return self.bus_backend == "memory"
        return self.ops_local_metrics
