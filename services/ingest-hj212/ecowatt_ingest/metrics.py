"""Prometheus metrics of the ingest service (kernel registry, `ecowatt_ingest_*`).

No label carries an MN, a peer address or anything else unbounded: CN labels are limited to
the commands the standard defines (anything else is `other`).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from ecowatt_kernel.metrics import LATENCY_BUCKETS
from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ACK_SECONDS",
    "BACKPRESSURE_SECONDS",
    "BLOCKED_PEERS",
    "BYTES",
    "COMMANDS",
    "CONNECTIONS",
    "CONNECTIONS_CLOSED",
    "CONNECTIONS_OPENED",
    "FRAMES",
    "PEERS_BLOCKED",
    "PUBLISH_BATCH",
    "PUBLISH_FAILURES",
    "PUBLISH_PENDING",
    "PUBLISH_SECONDS",
    "PW_FAILURES",
    "SESSIONS",
    "THROTTLED",
    "UNVERIFIED_DROPPED",
    "HotPathTally",
    "cn_label",
]

_FAST_BUCKETS = (0.0005, *LATENCY_BUCKETS)

CONNECTIONS = Gauge("ecowatt_ingest_connections", "Open device TCP connections.")
SESSIONS = Gauge("ecowatt_ingest_sessions", "Connections bound to a device MN.")
CONNECTIONS_OPENED = Counter(
    "ecowatt_ingest_connections_opened_total",
    "Accepted or refused TCP connections.",
    ["outcome"],
)
CONNECTIONS_CLOSED = Counter(
    "ecowatt_ingest_connections_closed_total", "Closed connections by reason.", ["reason"]
)
FRAMES = Counter(
    "ecowatt_ingest_frames_total", "Frames and rejected spans by CN and verdict.", ["cn", "verdict"]
)
BYTES = Counter("ecowatt_ingest_received_bytes_total", "Bytes received from devices.")
ACK_SECONDS = Histogram(
    "ecowatt_ingest_ack_seconds",
    "From the frame's arrival to its 9014 answer (written after the bus acknowledged it).",
    buckets=_FAST_BUCKETS,
)
PUBLISH_SECONDS = Histogram(
    "ecowatt_ingest_publish_seconds",
    "Duration of one batched publish call, retries included.",
    buckets=_FAST_BUCKETS,
)
PUBLISH_BATCH = Histogram(
    "ecowatt_ingest_publish_batch_messages",
    "Messages per batched publish call.",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000),
)
PUBLISH_FAILURES = Counter(
    "ecowatt_ingest_publish_failures_total", "Publish calls that failed and were retried."
)
PUBLISH_PENDING = Gauge(
    "ecowatt_ingest_publish_pending_messages", "Messages queued or in flight to the bus."
)
BACKPRESSURE_SECONDS = Counter(
    "ecowatt_ingest_backpressure_seconds_total",
    "Time every connection's reading was paused because the bus lagged.",
)
THROTTLED = Counter(
    "ecowatt_ingest_throttled_total",
    "Times a connection's reading was paused, by cause.",
    ["cause"],
)
COMMANDS = Counter(
    "ecowatt_ingest_command_results_total",
    "Device command outcomes by CN and status.",
    ["cn", "status"],
)

PW_FAILURES = Counter(
    "ecowatt_ingest_pw_failures_total",
    "Frames whose PW did not match the registry (counted per peer address for blocking).",
)
PEERS_BLOCKED = Counter(
    "ecowatt_ingest_peers_blocked_total",
    "Peer addresses blocked after pw_failures_max PW failures within pw_failure_window_s.",
)
BLOCKED_PEERS = Gauge("ecowatt_ingest_blocked_peers", "Peer addresses blocked now.")
UNVERIFIED_DROPPED = Counter(
    "ecowatt_ingest_unverified_dropped_total",
    "Frames of refused MNs not kept in Redis because one flush already held "
    "unverified_max_mns MNs (each is still recorded on hj212.frames).",
)

KNOWN_CNS = frozenset(
    f"{cn}"
    for cn in (
        *(1000, 1011, 1012, 1013, 1061, 1062, 1063, 1064, 1072),
        *(2011, 2012, 2021, 2022, 2031, 2041, 2051, 2061, 2081),
        *range(3011, 3022),
        *(9011, 9012, 9013, 9014, 9015),
    )
)


def cn_label(cn: str | None) -> str:
    """A bounded CN label: the CN when the standard defines it, else `other` / `none`."""
    if cn is None:
        return "none"
    return cn if cn in KNOWN_CNS else "other"


class HotPathTally:
    """Per-frame metrics counted in plain Python and added to Prometheus by `flush` (the
    server's sweep, ten times a second): a Prometheus child takes a lock per `inc`, and a
    histogram's `observe` walks its buckets in Python — a few µs per frame, which a batch
    of frames shares this way."""

    __slots__ = ("_ack_buckets", "_ack_sum", "_bounds", "frames", "received")

    def __init__(self) -> None:
        self.frames: dict[tuple[str | None, str], int] = {}
        """(CN, verdict) -> frames since the last flush."""
        self.received = 0
        """Bytes from devices since the last flush."""
        self._bounds: list[float] = list(ACK_SECONDS._upper_bounds)
        self._ack_buckets = [0] * len(self._bounds)
        self._ack_sum = 0.0

    def ack(self, seconds: float) -> None:
        """One `ecowatt_ingest_ack_seconds` observation."""
        self._ack_buckets[bisect_left(self._bounds, seconds)] += 1
        self._ack_sum += seconds

    def flush(self) -> None:
        if self.received:
            BYTES.inc(self.received)
            self.received = 0
        frames, self.frames = self.frames, {}
        for (cn, verdict), count in frames.items():
            FRAMES.labels(cn_label(cn), verdict).inc(count)
        if self._ack_sum or any(self._ack_buckets):
            buckets: Any = ACK_SECONDS._buckets  # (prometheus_client's own child state)
            for index, count in enumerate(self._ack_buckets):
                if count:
                    buckets[index].inc(count)
            ACK_SECONDS._sum.inc(self._ack_sum)
            self._ack_buckets = [0] * len(self._bounds)
            self._ack_sum = 0.0
