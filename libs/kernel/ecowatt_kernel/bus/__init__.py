"""The message bus: one interface; Kafka, in-process and durable in-process backends.

    bus = make_bus(settings)          # KafkaBus, InProcessBus or DiskBus (settings.bus_backend)
    await bus.subscribe(group="validation", topics=["telemetry.readings"], handler=handle)
    await bus.start()
    await bus.publish([encode(event)])    # returns once the bus holds it durably
    await bus.stop()

Handlers receive the records of one partition in offset order and must be idempotent:
delivery is at least once. See `base` for retries and dead-lettering.
"""

from __future__ import annotations

from pathlib import Path

from ecowatt_kernel.bus.base import DEFAULT_MAX_BATCH, Bus, Subscription, is_transient
from ecowatt_kernel.bus.disk import DiskBus
from ecowatt_kernel.bus.kafka import KafkaBus, KafkaConnection
from ecowatt_kernel.bus.memory import InProcessBus
from ecowatt_kernel.bus.types import (
    BatchHandler,
    BusError,
    BusUnavailableError,
    Message,
    Partitions,
    PublishError,
    RebalanceHook,
    Record,
    TransientError,
)
from ecowatt_kernel.settings import KernelSettings

__all__ = [
    "DEFAULT_MAX_BATCH",
    "BatchHandler",
    "Bus",
    "BusError",
    "BusUnavailableError",
    "DiskBus",
    "InProcessBus",
    "KafkaBus",
    "KafkaConnection",
    "Message",
    "Partitions",
    "PublishError",
    "RebalanceHook",
    "Record",
    "Subscription",
    "TransientError",
    "is_transient",
    "kafka_connection",
    "make_bus",
]


def kafka_connection(settings: KernelSettings) -> KafkaConnection:
    """The Kafka connection described by `settings`."""
    return KafkaConnection(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"{settings.service_name}-{settings.instance_id}",
        security_protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        sasl_username=settings.kafka_sasl_username,
        sasl_password=(
            settings.kafka_sasl_password.get_secret_value()
            if settings.kafka_sasl_password
            else None
        ),
    )


def make_bus(settings: KernelSettings, *, disk_folder: Path | None = None) -> Bus:
    """The bus backend chosen by `settings.bus_backend` (`disk_folder` overrides
    `settings.bus_disk_dir` for the durable in-process bus)."""
    if settings.bus_backend == "memory":
        return InProcessBus(max_attempts=settings.bus_max_attempts)
    if settings.bus_backend == "disk":
        return DiskBus(
            disk_folder or settings.bus_disk_dir,
            retention_bytes=settings.bus_disk_retention_bytes,
            retention_ms=int(settings.bus_disk_retention_hours * 3600 * 1000),
            checkpoint_bytes=settings.bus_disk_checkpoint_bytes,
            max_attempts=settings.bus_max_attempts,
        )
    return KafkaBus(
        kafka_connection(settings),
        max_in_flight=settings.kafka_max_in_flight,
        linger_ms=settings.kafka_linger_ms,
        compression=settings.kafka_compression,
        replication_factor=settings.kafka_replication_factor,
        max_attempts=settings.bus_max_attempts,
    )
