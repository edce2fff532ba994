"""The topic registry: every topic of DESIGN §3 with its key, partitions and retention.

`make infra-up` creates these topics (and their `.dlq` twins) on the broker; the in-process
bus uses the same partition counts so that keyed ordering behaves the same in both modes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DLQ_SUFFIX", "TOPICS", "TopicSpec", "dlq_topic", "topic"]

DLQ_SUFFIX = ".dlq"
_DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """How one topic is keyed, partitioned and kept."""

    name: str
    key: str
    description: str
    partitions: int
    compacted: bool = False
    retention_ms: int | None = 7 * _DAY_MS

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX

    def broker_config(self) -> dict[str, str]:
        if self.compacted:
            return {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
        assert self.retention_ms is not None
        return {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}


# Partition counts: ingest and analytics topics are the hot path and need room to scale out
# consumers (a group cannot use more consumers than partitions); control and audit are light.
TOPICS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        TopicSpec(
            "hj212.frames",
            "MN",
            "Every frame received, accepted or not: raw bytes, peer, "
            "receive time, verdict and reason. The audit trail and the replay source.",
            partitions=12,
            retention_ms=30 * _DAY_MS,
        ),
        TopicSpec(
            "telemetry.readings",
            "MN",
            "One decoded data frame: MN, CN, DataTime, values per code with flags.",
            partitions=12,
        ),
        TopicSpec(
            "registry.changes",
            "entity id",
            "Full snapshot of a changed archive entity.",
            partitions=3,
            compacted=True,
            retention_ms=None,
        ),
        TopicSpec(
            "telemetry.points",
            "enterprise id",
            "Readings bound to monitoring points in canonical quantities, with quality flags.",
            partitions=12,
        ),
        TopicSpec(
            "quality.findings",
            "enterprise id",
            "A data-quality or completeness finding opened, updated or resolved.",
            partitions=6,
        ),
        TopicSpec(
            "facility.states", "enterprise id", "A point or facility changed state.", partitions=6
        ),
        TopicSpec(
            "alarms",
            "enterprise id",
            "An alarm opened, updated, escalated or closed.",
            partitions=6,
        ),
        TopicSpec(
            "control.tasks",
            "enterprise id",
            "Per-enterprise measures issued, changed or ended for an alert.",
            partitions=3,
        ),
        TopicSpec(
            "control.compliance",
            "enterprise id",
            "Compliance verdict per enterprise and target per hour.",
            partitions=6,
        ),
        TopicSpec("device.commands", "MN", "Platform-to-device commands.", partitions=6),
        TopicSpec("device.command-results", "MN", "Outcome of device commands.", partitions=6),
        TopicSpec(
            "audit.events",
            "actor",
            "Who did what, from where, with what result.",
            partitions=3,
            retention_ms=90 * _DAY_MS,
        ),
    )
}


def topic(name: str) -> TopicSpec:
    """Return the spec of a registered topic, or of a DLQ twin."""
    if name.endswith(DLQ_SUFFIX) and name.removesuffix(DLQ_SUFFIX) in TOPICS:
        return dlq_topic(TOPICS[name.removesuffix(DLQ_SUFFIX)])
    return TOPICS[name]


def dlq_topic(spec: TopicSpec) -> TopicSpec:
    """The dead-letter twin of `spec`: same key, one partition, kept 30 days."""
    return TopicSpec(
        spec.dlq,
        spec.key,
        f"Messages of {spec.name} that kept failing, with the error in their headers.",
        partitions=1,
        retention_ms=30 * _DAY_MS,
    )
