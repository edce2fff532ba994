"""The live board of the gateway (`ecowatt_auth.gateway.live`) on its own: which bus records
become stream items, for whom, and that nothing it reads can hold up its partition."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ecowatt_auth.gateway.live import LiveBoard
from ecowatt_kernel.bus import Record
from ecowatt_kernel.contracts import (
    AlarmChanged,
    EnterpriseSnapshot,
    FacilityStateChanged,
    RegistryChange,
    encode,
)
from ecowatt_kernel.identity import DataScope
from ecowatt_kernel.registry_view import RegistryView

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def record(event: object, offset: int = 0, age_s: float = 0.0) -> Record:
    message = encode(event)  # type: ignore[arg-type]
    return Record(
        topic=message.topic,
        partition=0,
        offset=offset,
        key=message.key,
        value=message.value,
        headers=message.headers,
        timestamp_ms=int((time.time() - age_s) * 1000),
    )


def view_with(*enterprises: tuple[str, str]) -> RegistryView:
    view = RegistryView()
    for enterprise_id, district in enterprises:
        snapshot = EnterpriseSnapshot(
            id=enterprise_id, updated_at=NOW, name=enterprise_id, district_code=district
        )
        view.apply(
            RegistryChange(
                entity="enterprise",
                entity_id=enterprise_id,
                operation="upsert",
                revision=1,
                snapshot=snapshot.model_dump(mode="json"),
                changed_at=NOW,
            )
        )
    return view


def facility(
    enterprise_id: str, state: str = "stopped", kind: str = "facility"
) -> FacilityStateChanged:
    return FacilityStateChanged(
        enterprise_id=enterprise_id,
        subject_kind=kind,  # type: ignore[arg-type]
        subject_id=f"{enterprise_id}-CF01",
        state=state,  # type: ignore[arg-type]
        since=NOW,
    )


def alarm(enterprise_id: str, district: str | None, status: str = "open") -> AlarmChanged:
    return AlarmChanged(
        alarm_id=f"A-{enterprise_id}",
        enterprise_id=enterprise_id,
        rule_code="R1",
        rule_version=2,
        subject_id="G1",
        change="opened",
        status=status,
        level=2,
        opened_at=NOW,
        changed_at=NOW,
        active=True,
        district_code=district,
    )


async def test_items_go_to_the_streams_whose_scope_holds_the_enterprise() -> None:
    board = LiveBoard(view_with(("E1", "610112"), ("E2", "610113")))
    with (
        board.listen(DataScope(all=True)) as city,
        board.listen(DataScope(districts=frozenset({"610112"}))) as weiyang,
        board.listen(DataScope(enterprises=frozenset({"E2"}))) as company,
    ):
        await board.handle([record(facility("E1")), record(alarm("E2", "610113"), 1)])
        assert [i["type"] for i in _drain(city)] == ["facility", "alarm"]
        assert [(i["type"], i["enterprise_id"]) for i in _drain(weiyang)] == [("facility", "E1")]
        items = _drain(company)
        assert [(i["type"], i["enterprise_id"]) for i in items] == [("alarm", "E2")]
        assert items[0]["status"] == "open" and items[0]["level"] == 2
        assert "district_code" not in items[0]


async def test_a_city_code_covers_its_districts_and_unknown_enterprises_stay_hidden() -> None:
    board = LiveBoard(view_with(("E1", "610112")))
    with board.listen(DataScope(districts=frozenset({"610100"}))) as city_by_code:
        await board.handle([record(facility("E1")), record(facility("E-unknown"), 1)])
        assert [i["enterprise_id"] for i in _drain(city_by_code)] == ["E1"]


async def test_points_history_and_garbage_are_left_out() -> None:
    board = LiveBoard(view_with(("E1", "610112")))
    with board.listen(DataScope(all=True)) as city:
        garbage = Record("alarms", 0, 9, b"E1", b"not json", (), int(time.time() * 1000))
        await board.handle(
            [
                record(facility("E1", kind="point")),
                record(facility("E1"), 1, age_s=3600),  # before this process started
                garbage,
                record(facility("E1", state="running"), 2),
            ]
        )
        assert [i["state"] for i in _drain(city)] == ["running"]


async def test_a_full_queue_asks_the_browser_to_reload() -> None:
    board = LiveBoard(view_with(("E1", "610112")))
    with board.listen(DataScope(all=True)) as city:
        await board.handle([record(facility("E1"), n) for n in range(city.queue.maxsize + 5)])
        assert city.overflowed and city.queue.full()
    assert board.listeners == set()


def _drain(listener: object) -> list[dict[str, object]]:
    queue = listener.queue  # type: ignore[attr-defined]
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
