"""Gathering the platform status: one round of checks, each bounded by a timeout.

Sources, and why each:

- readiness: every service's own `/readyz` (the checks it runs on its bus, Redis, database and
  consumers), so the page says what the service says of itself;
- consumer lag: on Kafka, the brokers' committed offsets against the partitions' ends (admin
  API), so a group whose consumers are all dead still shows its growing lag; on the
  in-process bus (standalone), the `ecowatt_bus_consumer_lag` gauge of this process;
- dead letters: records on each `<topic>.dlq` (end minus beginning offsets);
- PostgreSQL and Redis: asked directly (version, size, connections; memory, clients);
- device links: the ingest instances' gauges (`ecowatt_ingest_connections`, `…_sessions`)
  and frame counters, scraped from their `/metrics` (or read locally in standalone).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from ecowatt_kernel.app import ServiceContext
from ecowatt_kernel.bus import Bus, kafka_connection
from ecowatt_kernel.contracts.topics import DLQ_SUFFIX, TOPICS
from ecowatt_kernel.db import Database
from ecowatt_kernel.redis_client import Redis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from ecowatt_ops.settings import OpsSettings
from ecowatt_ops.status.models import (
    ConsumerLag,
    DatabaseState,
    DeadLetters,
    DeviceLinks,
    Overall,
    PlatformStatus,
    RedisState,
    ServiceHealth,
)

__all__ = [
    "Sample",
    "database_state",
    "dead_letters",
    "device_links",
    "kafka_offsets",
    "metrics_lag",
    "platform_status",
    "probe_services",
    "read_metrics",
    "redis_state",
    "summarise",
]

Sample = tuple[str, dict[str, str], float]
"""One Prometheus sample: name, labels, value."""

REGISTRY_VIEW_GROUP = ".registry-view."


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200] if str(exc) else type(exc).__name__


async def probe_services(*, client: httpx.AsyncClient, urls: dict[str, str]) -> list[ServiceHealth]:
    """Ask every service's `/readyz`, all at once."""

    async def probe(name: str, url: str) -> ServiceHealth:
        started = time.perf_counter()
        try:
            response = await client.get(f"{url}/readyz")
        except httpx.HTTPError as exc:
            return ServiceHealth(name=name, url=url, status="unreachable", error=_error(exc))
        try:
            body = response.json()
            checks = {str(k): bool(v) for k, v in dict(body.get("checks", {})).items()}
        except (ValueError, AttributeError, TypeError):
            checks = {}
        return ServiceHealth(
            name=name,
            url=url,
            status="ready" if response.status_code == 200 else "not_ready",
            checks=checks,
            latency_ms=_ms(started),
            error=None if response.status_code == 200 else f"HTTP {response.status_code}",
        )

    return list(await asyncio.gather(*(probe(n, u) for n, u in urls.items())))


def _samples(families: Iterable[Any]) -> list[Sample]:
    return [(s.name, dict(s.labels), float(s.value)) for f in families for s in f.samples]


async def read_metrics(
    *, client: httpx.AsyncClient, urls: dict[str, str], local: bool
) -> dict[str, list[Sample]]:
    """Every source's samples: this process's registry (`local`) or each service's /metrics."""
    if local:
        return {"local": _samples(REGISTRY.collect())}

    async def scrape(name: str, url: str) -> tuple[str, list[Sample]]:
        try:
            response = await client.get(f"{url}/metrics")
            response.raise_for_status()
            return name, _samples(text_string_to_metric_families(response.text))
        except (httpx.HTTPError, ValueError):
            return name, []  # unreachable services are reported by probe_services

    return dict(await asyncio.gather(*(scrape(n, u) for n, u in urls.items())))


def device_links(*, metrics: dict[str, list[Sample]]) -> DeviceLinks:
    """Sum the ingest gauges and frame counters over every source that has them."""
    connections = sessions = instances = 0
    frames: dict[str, float] = defaultdict(float)
    for samples in metrics.values():
        found = False
        for name, labels, value in samples:
            if name == "ecowatt_ingest_connections":
                connections += int(value)
                found = True
            elif name == "ecowatt_ingest_sessions":
                sessions += int(value)
            elif name == "ecowatt_ingest_frames_total":
                frames[labels.get("verdict", "unknown")] += value
        instances += found
    return DeviceLinks(
        connections=connections,
        sessions=sessions,
        ingest_instances=instances,
        frames_by_verdict={k: int(v) for k, v in sorted(frames.items())},
    )


def metrics_lag(*, metrics: dict[str, list[Sample]]) -> list[ConsumerLag]:
    """Consumer lag from the `ecowatt_bus_consumer_lag` gauges (in-process bus)."""
    lag: dict[tuple[str, str], float] = defaultdict(float)
    for samples in metrics.values():
        for name, labels, value in samples:
            if name == "ecowatt_bus_consumer_lag":
                lag[(labels.get("group", ""), labels.get("topic", ""))] += value
    return [
        ConsumerLag(group=g, topic=t, lag=int(v), partitions=0, source="metrics")
        for (g, t), v in sorted(lag.items())
        if REGISTRY_VIEW_GROUP not in g
    ]


async def kafka_offsets(
    *, settings: OpsSettings, dlq_topics: Sequence[str]
) -> tuple[list[ConsumerLag], list[DeadLetters]]:
    """Lag of every consumer group and the size of every DLQ, from the brokers."""
    options = kafka_connection(settings).options() | {"client_id": "ecowatt-ops"}
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=5000)
    probe = AIOKafkaConsumer(**options, request_timeout_ms=5000)
    await admin.start()
    try:
        await probe.start()
        try:
            groups = sorted(g[0] for g in await admin.list_consumer_groups())
            committed: dict[str, dict[TopicPartition, int]] = {}
            for group in groups:
                offsets = await admin.list_consumer_group_offsets(group)
                committed[group] = {tp: meta.offset for tp, meta in offsets.items()}
            await probe._client.force_metadata_update()

            def partitions(topic: str) -> list[TopicPartition]:
                return [TopicPartition(topic, p) for p in probe.partitions_for_topic(topic) or ()]

            # every partition of a group's topics: one it never committed on counts from its
            # beginning (consumers start at the earliest offset)
            group_partitions = {
                group: [tp for t in sorted({tp.topic for tp in offsets}) for tp in partitions(t)]
                for group, offsets in committed.items()
            }
            dlq_partitions = [tp for topic in dlq_topics for tp in partitions(topic)]
            wanted = {tp for tps in group_partitions.values() for tp in tps} | set(dlq_partitions)
            ends = await probe.end_offsets(sorted(wanted))
            starts = await probe.beginning_offsets(sorted(wanted)) if wanted else {}
        finally:
            await probe.stop()
    finally:
        await admin.close()
    lags: list[ConsumerLag] = []
    for group in groups:
        if REGISTRY_VIEW_GROUP in group:
            # one fresh group per process start, left behind when the process goes: its lag
            # says nothing (a live view follows a compacted topic and is never far behind)
            continue
        by_topic: dict[str, list[int]] = defaultdict(list)
        for tp in group_partitions[group]:
            done = max(committed[group].get(tp, -1), starts.get(tp, 0))
            by_topic[tp.topic].append(max(ends.get(tp, done) - done, 0))
        lags.extend(
            ConsumerLag(
                group=group,
                topic=topic,
                lag=sum(values),
                partitions=len(values),
                source="kafka",
            )
            for topic, values in sorted(by_topic.items())
        )
    dead = []
    for topic in dlq_topics:
        parts = [tp for tp in dlq_partitions if tp.topic == topic]
        dead.append(
            DeadLetters(
                topic=topic,
                source_topic=topic.removesuffix(DLQ_SUFFIX),
                messages=sum(ends[tp] - starts[tp] for tp in parts) if parts else None,
            )
        )
    return lags, dead


async def dead_letters(*, bus: Bus, dlq_topics: Sequence[str]) -> list[DeadLetters]:
    """Records on each DLQ of an in-process bus (nothing is ever trimmed from a DLQ there)."""
    result = []
    for topic in dlq_topics:
        try:
            messages: int | None = sum((await bus.end_offsets(topic)).values())
        except Exception:
            messages = None
        result.append(
            DeadLetters(topic=topic, source_topic=topic.removesuffix(DLQ_SUFFIX), messages=messages)
        )
    return result


async def database_state(*, db: Database, timeout_s: float) -> DatabaseState:
    """Version, size, connections and role of the PostgreSQL server."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s), db.engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT current_setting('server_version'),"
                        " pg_database_size(current_database()),"
                        " (SELECT count(*) FROM pg_stat_activity"
                        "  WHERE datname = current_database()),"
                        " pg_is_in_recovery()"
                    )
                )
            ).one()
    except Exception as exc:
        return DatabaseState(ok=False, error=_error(exc))
    return DatabaseState(
        ok=True,
        version=str(row[0]),
        size_bytes=int(row[1]),
        connections=int(row[2]),
        in_recovery=bool(row[3]),
        latency_ms=_ms(started),
    )


async def redis_state(*, redis: Redis, timeout_s: float) -> RedisState:
    """Version, role, memory and clients of the Redis server."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            info: dict[str, Any] = await redis.info()
    except Exception as exc:
        return RedisState(ok=False, error=_error(exc))
    return RedisState(
        ok=True,
        version=str(info.get("redis_version")),
        role=str(info.get("role")),
        used_memory_bytes=int(info.get("used_memory", 0)),
        connected_clients=int(info.get("connected_clients", 0)),
        uptime_s=int(info.get("uptime_in_seconds", 0)),
        latency_ms=_ms(started),
    )


def summarise(
    *,
    services: Sequence[ServiceHealth],
    consumers: Sequence[ConsumerLag],
    database: DatabaseState,
    redis: RedisState,
    lag_warning: int,
) -> tuple[Overall, list[str]]:
    """down: storage or the device edge is out; degraded: a service or a consumer group."""
    down: list[str] = []
    degraded: list[str] = []
    if not database.ok:
        down.append(f"PostgreSQL does not answer ({database.error})")
    if not redis.ok:
        down.append(f"Redis does not answer ({redis.error})")
    for service in services:
        if service.status == "ready":
            continue
        failing = sorted(k for k, ok in service.checks.items() if not ok)
        detail = f"failing checks: {', '.join(failing)}" if failing else service.error
        sentence = f"service {service.name} is {service.status.replace('_', ' ')} ({detail})"
        (down if service.name.startswith("ingest") else degraded).append(sentence)
    for consumer in consumers:
        if consumer.lag > lag_warning:
            degraded.append(
                f"consumer group {consumer.group} is {consumer.lag} messages behind on "
                f"{consumer.topic}"
            )
    status: Overall = "down" if down else "degraded" if degraded else "ok"
    return status, down + degraded


def dlq_topics(settings: OpsSettings) -> list[str]:
    """The DLQs to watch: every registered topic's, unless the settings name others."""
    named = [t.strip() for t in settings.ops_dlq_topics.split(",") if t.strip()]
    return named or [spec.dlq for spec in TOPICS.values()]


async def platform_status(*, context: ServiceContext, client: httpx.AsyncClient) -> PlatformStatus:
    """One round of every check, run concurrently."""
    settings = context.settings
    assert isinstance(settings, OpsSettings)
    urls = settings.service_urls
    timeout = settings.ops_probe_timeout_s
    dlqs = dlq_topics(settings)
    services, metrics, database, redis = await asyncio.gather(
        probe_services(client=client, urls=urls),
        read_metrics(client=client, urls=urls, local=settings.reads_local_metrics),
        database_state(db=context.database, timeout_s=timeout),
        redis_state(redis=context.redis, timeout_s=timeout),
    )
    if settings.bus_backend == "kafka":
        try:
            async with asyncio.timeout(3 * timeout + 5):
                consumers, dead = await kafka_offsets(settings=settings, dlq_topics=dlqs)
        except Exception as exc:
            consumers = []
            dead = [
                DeadLetters(topic=t, source_topic=t.removesuffix(DLQ_SUFFIX), messages=None)
                for t in dlqs
            ]
            services = [
                *services,
                ServiceHealth(
                    name="kafka",
                    url=settings.kafka_bootstrap_servers,
                    status="unreachable",
                    error=_error(exc),
                ),
            ]
    else:
        consumers = metrics_lag(metrics=metrics)
        dead = await dead_letters(bus=context.bus, dlq_topics=dlqs)
    status, problems = summarise(
        services=services,
        consumers=consumers,
        database=database,
        redis=redis,
        lag_warning=settings.ops_lag_warning,
    )
    return PlatformStatus(
        status=status,
        problems=problems,
        checked_at=datetime.now(UTC),
        services=services,
        consumers=consumers,
        dead_letters=dead,
        database=database,
        redis=redis,
        devices=device_links(metrics=metrics),
    )
