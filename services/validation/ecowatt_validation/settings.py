"""Settings of the validation service (`ECOWATT_*` variables)."""

from __future__ import annotations

from datetime import time
from typing import Annotated

from ecowatt_kernel.settings import KernelSettings
from pydantic import Field


class ValidationSettings(KernelSettings):
    """EcoWatt validation (采集数据核查) settings."""

    service_name: str = "validation"
    http_port: int = 8004

    # HJ 212 data flags that count as valid (supervision.md §1.6: N, and S where allowed).
    valid_flags: str = "N"
    # Commands whose samples count toward completeness (real-time and minute data).
    sample_cns: str = "2011,2051"
    # Topics (overridable so that tests and benchmarks use private ones).
    readings_topic: str = "telemetry.readings"
    points_topic: str = "telemetry.points"
    registry_topic: str = "registry.changes"
    findings_topic: str = "quality.findings"
    publish_points: bool = True
    # Consumer groups are `<prefix>.bind` and `<prefix>.registry-view.<random>`: deployments,
    # tests and benchmarks sharing one broker give each validation its own prefix.
    validation_consumer_prefix: str = "validation"
    # Worker processes (README "Several workers"): the service process is worker 0 and starts
    # workers 1…N−1, which divide the partitions of `telemetry.readings` with it. Kafka bus
    # only: standalone (an in-process bus) runs one process.
    validation_workers: Annotated[int, Field(ge=1, le=64)] = 1
    validation_worker_index: int | None = None
    """Set by worker 0 for the workers it starts (not for operators)."""
    bind_max_batch: int = 20000
    # Bind several partitions' batches at once: one waits on PostgreSQL and Kafka while
    # another is computed (each partition stays in order; see `Bus.subscribe`).
    bind_concurrent_partitions: bool = True
    # Day close: the daily rules for yesterday run at this local time (settings.timezone).
    day_close_at: time = time(0, 15)
    # How many missed days a restarted service catches up on.
    day_close_catch_up_days: int = 3
    # Live offline sweep and debounce of archive checks after registry changes.
    sweep_interval_s: float = 60.0
    archive_debounce_s: float = 5.0
    # An enterprise's archive is judged once it has been quiet this long (or after an
    # explicit POST /archive/complete): an archive entered piece by piece through the API is
    # not judged half-built. Ten minutes covers a person entering one enterprise's points.
    archive_settle_s: float = 600.0

    @property
    def workers(self) -> int:
        """Worker processes in effect: one unless the bus is shared between processes."""
        return self.validation_workers if self.bus_backend == "kafka" else 1

    @property
    def worker(self) -> int:
        """This process's worker number (0: the service process, with the API and the
        once-per-city jobs)."""
        return self.validation_worker_index or 0

    @property
    def valid_flag_set(self) -> frozenset[str]:
        return frozenset(f.strip().upper() for f in self.valid_flags.split(",") if f.strip())

    @property
    def sample_cn_set(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.sample_cns.split(",") if c.strip())
