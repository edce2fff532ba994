"""`POST /enterprises/bulk` (issue 19): an enterprise with its production line, facilities,
device, points and control group in one transaction — history written, snapshots published —
or, on any problem, nothing at all, every problem named with the item it concerns."""

from __future__ import annotations

from typing import Any

import pytest
from ecowatt_kernel.identity import Role
from ecowatt_kernel.passwords import verify_password

from .conftest import CITY, Registry, enterprise_body, token, wait_for

pytestmark = pytest.mark.integration


def bundle(eid: str = "bulk-1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "enterprise": enterprise_body(id=eid, name=f"一次建档企业{eid}"),
        "production_lines": [{"id": f"{eid}-l1", "name": "1号线"}],
        "facilities": [
            {
                "id": f"{eid}-pf",
                "kind": "production",
                "name": "喷涂线",
                "rated_kw": 50,
                "production_line_id": f"{eid}-l1",
            },
            {"id": f"{eid}-cf", "kind": "control", "name": "活性炭吸附", "rated_kw": 30},
        ],
        "devices": [{"mn": f"{eid}MN".upper().replace("-", ""), "password": "123456"}],
        "points": [
            {
                "id": f"{eid}-pt",
                "point_type": "total",
                "name": "总电",
                "circuit": 1,
                "device_mn": f"{eid}MN".upper().replace("-", ""),
                "rated_kw": 120,
            },
            {
                "id": f"{eid}-pp",
                "point_type": "production",
                "name": "喷涂线电机",
                "circuit": 2,
                "facility_id": f"{eid}-pf",
                "device_mn": f"{eid}MN".upper().replace("-", ""),
                "rated_kw": 50,
                "start_stop_kw": 10,
            },
            {
                "id": f"{eid}-pc",
                "point_type": "control",
                "name": "主风机",
                "circuit": 3,
                "facility_id": f"{eid}-cf",
                "device_mn": f"{eid}MN".upper().replace("-", ""),
                "rated_kw": 30,
                "start_stop_kw": 3,
                "is_key": True,
            },
        ],
        "control_groups": [
            {
                "id": f"{eid}-g",
                "name": "1号治理线",
                "production_facility_ids": [f"{eid}-pf"],
                "control_facility_ids": [f"{eid}-cf"],
                "required_mode": "all",
            },
        ],
        "reason": "新企业建档",
    }
    return body | overrides


async def test_an_enterprise_and_its_archive_in_one_request(registry: Registry) -> None:
    client = registry.client
    r = await client.post("/enterprises/bulk", json=bundle(), headers=CITY)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["enterprise_id"] == "bulk-1"
    assert created["created"] == {
        "enterprise": 1,
        "production_lines": 1,
        "facilities": 2,
        "devices": 1,
        "points": 3,
        "control_groups": 1,
    }
    group = (await client.get("/control-groups/bulk-1-g", headers=CITY)).json()
    assert group["production_facility_ids"] == ["bulk-1-pf"] and group["enterprise_id"] == "bulk-1"
    point = (await client.get("/points/bulk-1-pc", headers=CITY)).json()
    assert point["facility_id"] == "bulk-1-cf" and point["created_by"] == "city-1"
    await wait_for(lambda: len([c for c in registry.changes() if "bulk-1" in c.entity_id]) >= 8)
    entities = {c.entity for c in registry.changes() if c.entity_id.lower().startswith("bulk")}
    assert entities >= {"enterprise", "facility", "device", "point", "control_group"}
    history = (
        await client.get(
            "/history", params={"enterprise_id": "bulk-1", "page_size": 50}, headers=CITY
        )
    ).json()
    assert history["total"] >= 9 and {h["reason"] for h in history["items"]} == {"新企业建档"}
    from ecowatt_registry.devices.models import Device
    from sqlalchemy import select

    async with registry.context.database.session() as session:
        stored = await session.scalar(select(Device.password_hash).where(Device.mn == "BULK1MN"))
    assert stored and verify_password("123456", stored), "the PW is stored hashed"


async def test_a_bundle_with_problems_writes_nothing_and_names_each(registry: Registry) -> None:
    client = registry.client
    body = bundle("bulk-2")
    body["points"][2]["facility_id"] = "nowhere"  # an unknown facility
    group = body["control_groups"][0]  # the sides swapped
    group["production_facility_ids"], group["control_facility_ids"] = ["bulk-2-cf"], ["bulk-2-pf"]
    body["facilities"][1]["enterprise_id"] = "someone-else"
    r = await client.post("/enterprises/bulk", json=body, headers=CITY)
    assert r.status_code == 422, r.text
    locs = {tuple(e["loc"][1:3]) for e in r.json()["errors"]}
    assert ("facilities", 1) in locs, r.json()["errors"]
    body["facilities"][1].pop("enterprise_id")
    r = await client.post("/enterprises/bulk", json=body, headers=CITY)
    assert r.status_code == 422, r.text
    locs = {tuple(e["loc"][1:3]) for e in r.json()["errors"]}
    assert {("points", 2), ("control_groups", 0)} <= locs, r.json()["errors"]
    assert (await client.get("/enterprises/bulk-2", headers=CITY)).status_code == 404
    assert (await client.get("/facilities/bulk-2-pf", headers=CITY)).status_code == 404
    assert not [c for c in registry.changes() if c.entity_id.startswith("bulk-2")]


async def test_a_bundle_is_scoped_and_needs_an_editing_role(registry: Registry) -> None:
    client = registry.client
    officer = token(Role.DISTRICT_OFFICER, districts=("610113",))
    r = await client.post("/enterprises/bulk", json=bundle("bulk-3"), headers=officer)
    assert r.status_code == 403, "district 610112 is outside the officer's scope"
    firm = token(Role.ENTERPRISE_USER, enterprises=("bulk-3",))
    r = await client.post("/enterprises/bulk", json=bundle("bulk-3"), headers=firm)
    assert r.status_code == 403
    assert (await client.post("/enterprises/bulk", json=bundle("bulk-3"), headers=CITY)).is_success
    r = await client.post("/enterprises/bulk", json=bundle("bulk-3"), headers=CITY)
    assert r.status_code == 409, "already in the archive"
