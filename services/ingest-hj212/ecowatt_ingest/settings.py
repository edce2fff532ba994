"""Settings of the ingest-hj212 service (`ECOWATT_*` variables, read once).

Every knob of the TCP server, the device policy, the protections and the reverse commands is
here; the README has the table.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator

from ecowatt_ingest.archive.models import ArchiveSettings


class IngestSettings(ArchiveSettings):  # (ArchiveSettings: the archive's own, on KernelSettings)
    """EcoWatt HJ 212 ingest settings."""

    service_name: str = "ingest-hj212"
    http_port: int = 8003

    # ------------------------------------------------------------------ TCP server
    hj212_host: str = "0.0.0.0"  # noqa: S104 - devices connect from anywhere
    hj212_port: int = 9212
    hj212_enabled: bool = True
    hj212_backlog: int = 4096
    use_uvloop: bool = True
    """Run the event loop on uvloop when `python -m ecowatt_ingest` starts (when installed)."""
    raise_nofile: bool = True
    """Raise RLIMIT_NOFILE towards max_connections + slack at start-up (when allowed)."""
    wait_for_registry_s: float = 120.0
    """Start serving TCP once the registry view caught up (or after this long)."""
    ingest_workers: Annotated[int, Field(ge=1, le=64)] = 1
    """Processes serving the HJ 212 port together (SO_REUSEPORT: the kernel spreads new
    connections over them). 1 (default): one process. Above 1, each worker is an instance
    of its own (`<instance_id>-w<k>`) and they share sessions, the duplicate check and
    reverse commands through Redis. Needs the Kafka bus: with standalone's in-process bus
    (memory, disk) there is always one process."""
    ingest_worker_index: int | None = None
    """Set by the supervisor for the worker processes it starts (not for operators)."""
    shared_uploads_per_device: int = 64
    """With several workers: recent uploads per device noted in Redis for the duplicate
    check across workers (a logger re-sends what was not answered, i.e. its last few)."""
    shared_uploads_ttl_s: int = 3600

    # ------------------------------------------------------------------ device policy
    device_policy: Literal["strict", "lenient"] = "strict"
    """Who may bind a session. Both policies: only a registry device whose PW was verified
    binds, replaces its old session, publishes readings and receives commands; a frame with
    an unknown MN or a wrong PW is recorded on hj212.frames and answered 9011 (QnRtn 4 / 3).
    strict (default): a device without a PW in the registry is refused like a wrong PW.
    lenient: such a device is accepted on its MN alone (identity `pw_not_provisioned`), but
    never replaces a live session of that MN — for commissioning, not for production."""
    pw_failures_max: int = 5
    """PW failures from one peer address within `pw_failure_window_s` that block it."""
    pw_failure_window_s: float = 300.0
    pw_block_s: float = 900.0
    """How long a blocked address may send only frames whose identity is already known."""
    pw_failures_per_mn_from: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """Peer networks whose PW failures count per (address, MN), not per address: put NAT
    gateways and TCP load balancers that front many devices here (JSON list of CIDRs).
    Loopback by default: `make run`'s simulated devices all connect from it."""

    # ------------------------------------------------------------------ protection
    max_connections: int = 20_000
    idle_timeout_s: float = 600.0
    """Close a connection that sent nothing for this long (devices send heartbeats or data)."""
    max_segment_size: int = 4096
    """Largest data segment accepted (the standard's 1024, with room for unsplit devices)."""
    max_frames_per_s: float = 50.0
    """Per-connection frame rate; above it the connection is throttled (reading paused)."""
    frame_burst: int = 200
    max_unacked_per_connection: int = 256
    """Frames of one connection waiting for the bus; above it that connection's reading pauses."""
    partial_frame_timeout_s: float = 60.0
    """A frame still incomplete after this long is flushed (rejected as truncated)."""
    flush_idle_s: float = 0.5
    """A held frame (no trailer yet) is released this long after the last byte."""
    max_garbage_bytes: int = 65_536
    """Close a connection that sent this many rejected bytes without one valid frame."""
    write_buffer_high: int = 64 * 1024
    """A peer that does not read our answers stops being read above this write buffer."""

    # ------------------------------------------------------------------ publishing
    publish_batch_max: int = 5000
    """Messages per bus publish call (frames of all connections batched together)."""
    publish_linger_s: float = 0.002
    publish_concurrency: int = 8
    """Publish calls in flight at once (a device's messages stay in order whatever the
    number: they never travel in two calls at once)."""
    publish_high_watermark: int = 20_000
    """Messages queued or in flight above which every connection stops being read."""
    publish_low_watermark: int = 10_000
    publish_retry_max_s: float = 5.0

    topic_frames: str = "hj212.frames"
    topic_readings: str = "telemetry.readings"
    topic_commands: str = "device.commands"
    topic_command_results: str = "device.command-results"
    topic_audit: str = "audit.events"
    topic_registry: str = "registry.changes"

    # ------------------------------------------------------------------ protocol duties
    duplicate_cache_size: int = 200_000
    """(MN, QN, content) of recent frames remembered to spot re-sends."""
    split_timeout_s: float = 40.0
    """Incomplete split sets are given up after this long (OverTime × (ReCount + 1))."""
    max_clock_drift_s: float = 60.0
    """A device whose clock (QN time of its live frames) is off by more gets a 1012."""
    clock_correction_interval_s: float = 3600.0
    """At most one automatic 1012 per device within this interval."""
    clock_check_interval_s: float = 60.0
    """A device's clock is judged from the newest QN of each such window of its frames, and
    only when two windows in a row agree (a back-filling device's old QNs never do)."""
    history_grace_s: float = 900.0
    """Data whose DataTime (plus its CN's period) lies this long before the device's
    connection started are history (`TelemetryReading.history`): a catch-up, not live."""
    answer_heartbeats: bool = True
    """Answer 9015 heartbeats with 9013 when they ask for an answer."""

    # ------------------------------------------------------------------ commands
    commands_enabled: bool = True
    command_overtime_s: int = 10
    command_recount: int = 3
    command_max_age_s: float = 300.0
    """Commands older than this when consumed are not executed (replays, long outages)."""
    command_execution_timeout_s: float = 120.0
    """After 9011, the command fails if no 9012 (or data) comes for this long."""
    backfill_enabled: bool = True
    """After a reconnect following a gap, request the missing minute and hour data."""
    backfill_min_gap_s: float = 600.0
    backfill_max_window_s: float = 7 * 24 * 3600.0

    # ------------------------------------------------------------------ state
    session_flush_s: float = 1.0
    """How often session state (last seen, counters) is written to Redis."""
    instance_ttl_s: int = 30
    """An instance whose heartbeat key is older than this holds no session."""
    recent_rejects: int = 50
    unverified_max_mns: int = 10_000
    """MNs refused at the door kept in Redis (`ingest:unverified`, `…:unregistered` and one
    small hash each); the least recently seen go first, and the MNs of one flush beyond it
    are counted, not kept."""
    unverified_ttl_s: float = 7 * 86400.0
    """An MN refused at the door is forgotten in Redis after this long without a frame."""
    redis_prefix: str = "ingest"

    @property
    def workers(self) -> int:
        """Worker processes in effect: one unless the bus is shared between processes."""
        return self.ingest_workers if self.bus_backend == "kafka" else 1

    @property
    def shares_state(self) -> bool:
        """This process is one of several workers: duplicates and bindings go via Redis."""
        return self.workers > 1 or self.ingest_worker_index is not None

    @property
    def worker_instance(self) -> str:
        """This process's instance id (a worker's carries its number)."""
        if self.ingest_worker_index is None and self.workers == 1:
            return self.instance_id
        return f"{self.instance_id}-w{self.ingest_worker_index or 0}"

    @field_validator("pw_failures_per_mn_from")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError: refused at start-up
        return value
