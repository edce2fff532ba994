"""A live, in-memory copy of the archive, built from `registry.changes`.

Ingest (devices, passwords, profiles), validation (points), alarm and control-plan (groups,
thresholds) and the device simulator all need the current archive. Each process reads the
compacted topic from the beginning into a `RegistryView` at start-up — in a consumer group of
its own, so every instance sees every entity — and keeps it current afterwards:

    view = RegistryView()
    await view.attach(bus, group_prefix="ingest")
    await view.wait_ready()               # caught up with the topic as it was at attach time
    device = view.device("0100...A1")     # DeviceSnapshot | None
    points = view.points_of_device(mn)    # PointSnapshots measured by that device

Older revisions of an entity never overwrite newer ones, so redelivery and replays are
harmless. Listeners registered with `on_change` see every applied change.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, TypeVar, overload

from ecowatt_kernel.bus import Bus, Record, Subscription
from ecowatt_kernel.contracts import (
    ContractError,
    ControlGroupSnapshot,
    DeviceSnapshot,
    EnterpriseSnapshot,
    FacilitySnapshot,
    PointSnapshot,
    RegistryChange,
    Snapshot,
    decode,
    parse_snapshot,
)

__all__ = ["ChangeListener", "RegistryView"]

_logger = logging.getLogger(__name__)

TOPIC = "registry.changes"
SnapshotT = TypeVar("SnapshotT", bound=Snapshot)
ChangeListener = Callable[[str, str, Snapshot | None, Snapshot | None], None]
"""Called with (entity, entity_id, old snapshot, new snapshot); new is None on delete."""


class RegistryView:
    """Current snapshots by entity and id, with the indexes consumers need."""

    def __init__(self, *, topic: str = TOPIC) -> None:
        self.topic = topic
        self._entities: dict[str, dict[str, Snapshot]] = defaultdict(dict)
        self._revisions: dict[tuple[str, str], int] = {}
        self._points_by_device: dict[str, dict[str, PointSnapshot]] = defaultdict(dict)
        self._listeners: list[ChangeListener] = []
        self._ready = asyncio.Event()
        self._targets: dict[int, int] = {}
        self._positions: dict[int, int] = {}
        self.subscription: Subscription | None = None

    # ----------------------------------------------------------------------------- reading

    def get(self, entity: str, entity_id: str) -> Snapshot | None:
        """The snapshot of one entity, or None."""
        return self._entities.get(entity, {}).get(entity_id)

    # Each entity kind holds the model `ENTITY_MODELS` names for it (`parse_snapshot`).
    @overload
    def all(self, entity: Literal["enterprise"]) -> list[EnterpriseSnapshot]: ...
    @overload
    def all(self, entity: Literal["facility"]) -> list[FacilitySnapshot]: ...
    @overload
    def all(self, entity: Literal["point"]) -> list[PointSnapshot]: ...
    @overload
    def all(self, entity: Literal["device"]) -> list[DeviceSnapshot]: ...
    @overload
    def all(self, entity: Literal["control_group"]) -> list[ControlGroupSnapshot]: ...
    @overload
    def all(self, entity: str) -> list[Snapshot]: ...
    def all(self, entity: str) -> Sequence[Snapshot]:
        """Every current snapshot of one entity kind."""
        return list(self._entities.get(entity, {}).values())

    def enterprise(self, enterprise_id: str) -> EnterpriseSnapshot | None:
        return _typed(self.get("enterprise", enterprise_id), EnterpriseSnapshot)

    def device(self, mn: str) -> DeviceSnapshot | None:
        return _typed(self.get("device", mn), DeviceSnapshot)

    def point(self, point_id: str) -> PointSnapshot | None:
        return _typed(self.get("point", point_id), PointSnapshot)

    def facility(self, facility_id: str) -> FacilitySnapshot | None:
        return _typed(self.get("facility", facility_id), FacilitySnapshot)

    def control_group(self, group_id: str) -> ControlGroupSnapshot | None:
        return _typed(self.get("control_group", group_id), ControlGroupSnapshot)

    def points_of_device(self, mn: str) -> list[PointSnapshot]:
        """Points measured by the device `mn`, by circuit."""
        return sorted(self._points_by_device.get(mn, {}).values(), key=lambda p: p.circuit)

    def of_enterprise(self, entity: str, enterprise_id: str) -> list[Snapshot]:
        """Snapshots of one kind that belong to an enterprise."""
        return [s for s in self.all(entity) if getattr(s, "enterprise_id", None) == enterprise_id]

    def counts(self) -> dict[str, int]:
        return {entity: len(items) for entity, items in self._entities.items()}

    # ---------------------------------------------------------------------------- changing

    def on_change(self, listener: ChangeListener) -> None:
        """Call `listener` after every applied change."""
        self._listeners.append(listener)

    def apply(self, change: RegistryChange) -> bool:
        """Apply one change; False when it is older than what the view holds."""
        key = (change.entity, change.entity_id)
        if self._revisions.get(key, -1) > change.revision:
            return False
        self._revisions[key] = change.revision
        new = parse_snapshot(change)
        old = self._entities[change.entity].pop(change.entity_id, None)
        if new is not None:
            self._entities[change.entity][change.entity_id] = new
        self._index(old, new)
        for listener in self._listeners:
            listener(change.entity, change.entity_id, old, new)
        return True

    def _index(self, old: Snapshot | None, new: Snapshot | None) -> None:
        if isinstance(old, PointSnapshot) and old.device_mn:
            self._points_by_device[old.device_mn].pop(old.id, None)
        if isinstance(new, PointSnapshot) and new.device_mn:
            self._points_by_device[new.device_mn][new.id] = new

    def apply_all(self, changes: Iterable[RegistryChange]) -> None:
        for change in changes:
            self.apply(change)

    # ------------------------------------------------------------------------------- on bus

    async def attach(self, bus: Bus, *, group_prefix: str) -> Subscription:
        """Read registry.changes from the beginning and follow it."""
        self._targets = {
            p: end for p, end in (await bus.end_offsets(self.topic)).items() if end > 0
        }
        self._check_ready()
        # A fresh group per process start: every instance reads the whole compacted topic.
        group = f"{group_prefix}.registry-view.{uuid.uuid4().hex[:12]}"
        self.subscription = await bus.subscribe(
            group=group, topics=[self.topic], handler=self._handle, max_batch=2000
        )
        return self.subscription

    async def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait until the view holds everything published before `attach`."""
        await asyncio.wait_for(self._ready.wait(), timeout_s)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def _handle(self, records: Sequence[Record]) -> None:
        for record in records:
            try:
                change = decode(record).data
                if isinstance(change, RegistryChange):
                    self.apply(change)
            except (ContractError, ValueError) as exc:
                # One bad snapshot must not block the archive; it is logged, not retried.
                _logger.error(
                    "registry view: skipping %s/%d@%d: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )
            self._positions[record.partition] = record.offset + 1
        self._check_ready()

    def _check_ready(self) -> None:
        if self._ready.is_set():
            return
        if all(self._positions.get(p, 0) >= end for p, end in self._targets.items()):
            self._ready.set()


def _typed(snapshot: Snapshot | None, cls: type[SnapshotT]) -> SnapshotT | None:
    return snapshot if isinstance(snapshot, cls) else None
