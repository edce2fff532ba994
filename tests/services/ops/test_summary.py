"""The status verdict and the metric readings, on hand-made inputs (no servers needed)."""

from __future__ import annotations

from ecowatt_ops.status.models import ConsumerLag, DatabaseState, RedisState, ServiceHealth
from ecowatt_ops.status.service import device_links, metrics_lag, summarise

OK_DB = DatabaseState(ok=True)
OK_REDIS = RedisState(ok=True)


def ready(name: str) -> ServiceHealth:
    return ServiceHealth(name=name, url="http://x", status="ready", checks={"bus": True})


def lag(group: str, value: int) -> ConsumerLag:
    return ConsumerLag(group=group, topic="t", lag=value, partitions=3, source="kafka")


def test_all_ready_and_no_lag_is_ok() -> None:
    status, problems = summarise(
        services=[ready("alarm"), ready("ingest-hj212")],
        consumers=[lag("alarm.points", 10)],
        database=OK_DB,
        redis=OK_REDIS,
        lag_warning=100,
    )
    assert (status, problems) == ("ok", [])


def test_a_service_not_ready_degrades_and_names_its_failing_check() -> None:
    broken = ServiceHealth(
        name="validation", url="u", status="not_ready", checks={"bus": True, "consumers": False}
    )
    status, problems = summarise(
        services=[ready("alarm"), broken],
        consumers=[],
        database=OK_DB,
        redis=OK_REDIS,
        lag_warning=100,
    )
    assert status == "degraded"
    assert problems == ["service validation is not ready (failing checks: consumers)"]


def test_lag_above_the_warning_degrades() -> None:
    status, problems = summarise(
        services=[],
        consumers=[lag("alarm.points", 101)],
        database=OK_DB,
        redis=OK_REDIS,
        lag_warning=100,
    )
    assert status == "degraded"
    assert "alarm.points is 101 messages behind" in problems[0]


def test_storage_or_the_device_edge_out_is_down() -> None:
    edge = ServiceHealth(name="ingest-hj212", url="u", status="unreachable", error="refused")
    status, problems = summarise(
        services=[edge],
        consumers=[],
        database=DatabaseState(ok=False, error="timeout"),
        redis=OK_REDIS,
        lag_warning=100,
    )
    assert status == "down"
    assert problems == [
        "PostgreSQL does not answer (timeout)",
        "service ingest-hj212 is unreachable (refused)",
    ]


def test_device_links_sum_over_ingest_instances_only() -> None:
    metrics = {
        "ingest-a": [
            ("ecowatt_ingest_connections", {}, 120.0),
            ("ecowatt_ingest_sessions", {}, 118.0),
            ("ecowatt_ingest_frames_total", {"cn": "2011", "verdict": "accepted"}, 900.0),
            ("ecowatt_ingest_frames_total", {"cn": "2051", "verdict": "accepted"}, 90.0),
            ("ecowatt_ingest_frames_total", {"cn": "none", "verdict": "rejected"}, 3.0),
        ],
        "ingest-b": [
            ("ecowatt_ingest_connections", {}, 80.0),
            ("ecowatt_ingest_sessions", {}, 80.0),
        ],
        "alarm": [("ecowatt_bus_consumer_lag", {"group": "alarm.points", "topic": "p"}, 4.0)],
    }
    links = device_links(metrics=metrics)
    assert links.connections == 200
    assert links.sessions == 198
    assert links.ingest_instances == 2
    assert links.frames_by_verdict == {"accepted": 990, "rejected": 3}


def test_metrics_lag_adds_replicas_and_hides_registry_views() -> None:
    metrics = {
        "a": [
            ("ecowatt_bus_consumer_lag", {"group": "alarm.points", "topic": "p"}, 4.0),
            ("ecowatt_bus_consumer_lag", {"group": "alarm.registry-view.ab12", "topic": "r"}, 9.0),
        ],
        "b": [("ecowatt_bus_consumer_lag", {"group": "alarm.points", "topic": "p"}, 6.0)],
    }
    assert [(c.group, c.lag) for c in metrics_lag(metrics=metrics)] == [("alarm.points", 10)]
