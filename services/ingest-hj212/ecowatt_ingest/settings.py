"""Settings of the ingest-hj212 service (`ECOWATT_*` variables, read once).

Every knob of the TCP server, the device policy, the protections and the reverse commands is
here; the README has the table.
"""

from __future__ import annotations

from typing import Literal

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

    # ------------------------------------------------------------------ device policy
    device_policy: Literal["strict", "lenient"] = "lenient"
    """strict: frames of unknown MNs or with a wrong PW are rejected (not kept, no 9014);
    lenient: they are kept as `unregistered` and answered."""

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
    """A device whose clock (QN time) is off by more is sent a 1012 set-time."""
    clock_correction_interval_s: float = 3600.0
    """At most one automatic 1012 per device within this interval."""
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
    redis_prefix: str = "ingest"
