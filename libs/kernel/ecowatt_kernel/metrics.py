"""Prometheus metrics shared by every service.

Metric names start with `ecowatt_`. Labels never carry device MNs, enterprise ids or other
unbounded values: cardinality stays fixed whatever the fleet size. In standalone mode every
service shares one process registry, so kernel metrics carry a `service` label.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = [
    "BUS_CONSUMED",
    "BUS_CONSUMER_LAG",
    "BUS_DLQ",
    "BUS_HANDLER_SECONDS",
    "BUS_PUBLISHED",
    "BUS_PUBLISH_SECONDS",
    "BUS_RETRIES",
    "CONTENT_TYPE_LATEST",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_SECONDS",
    "LATENCY_BUCKETS",
    "OUTBOX_PUBLISHED",
    "render_metrics",
]

# Seconds, from 1 ms to 1 min: covers an ack (ms) and an end-to-end alarm (s).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

BUS_PUBLISHED = Counter(
    "ecowatt_bus_published_total", "Messages acknowledged by the bus.", ["topic"]
)
BUS_PUBLISH_SECONDS = Histogram(
    "ecowatt_bus_publish_seconds",
    "Time from publish() to the bus's acknowledgement.",
    ["topic"],
    buckets=LATENCY_BUCKETS,
)
BUS_CONSUMED = Counter(
    "ecowatt_bus_consumed_total", "Messages handled and committed.", ["topic", "group"]
)
BUS_HANDLER_SECONDS = Histogram(
    "ecowatt_bus_handler_seconds",
    "Time a batch handler took.",
    ["group"],
    buckets=LATENCY_BUCKETS,
)
BUS_RETRIES = Counter(
    "ecowatt_bus_retries_total",
    "Handler attempts that failed and were retried.",
    ["topic", "group", "kind"],
)
BUS_DLQ = Counter(
    "ecowatt_bus_dead_lettered_total", "Messages sent to a dead-letter topic.", ["topic", "group"]
)
OUTBOX_PUBLISHED = Counter(
    "ecowatt_outbox_published_total",
    "Outbox rows published by a relay (re-sends after a failure included).",
    ["outbox"],
)
BUS_CONSUMER_LAG = Gauge(
    "ecowatt_bus_consumer_lag",
    "Messages behind the end of the topic, per consumer group.",
    ["topic", "group"],
)
HTTP_REQUESTS = Counter(
    "ecowatt_http_requests_total",
    "HTTP requests handled.",
    ["service", "method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "ecowatt_http_request_seconds",
    "HTTP request duration.",
    ["service", "method", "route"],
    buckets=LATENCY_BUCKETS,
)


def render_metrics() -> bytes:
    """Return the process registry in the Prometheus text format."""
    return generate_latest(REGISTRY)
