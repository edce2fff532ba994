"""Facilities, devices, points and control groups: references, thresholds, history, scope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from ecowatt_kernel.identity import Role
from ecowatt_kernel.passwords import verify_password

from .conftest import CITY, Registry, enterprise_body, token, wait_for

pytestmark = pytest.mark.integration


async def post(
    registry: Registry, path: str, body: dict[str, Any], headers: Mapping[str, str] = CITY
) -> dict[str, Any]:
    response = await registry.client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def build_enterprise(registry: Registry, eid: str, district: str = "610112") -> None:
    await post(
        registry, "/enterprises", enterprise_body(id=eid, name=f"企业{eid}", district_code=district)
    )
    await post(
        registry,
        "/facilities",
        {
            "id": f"{eid}-pf",
            "enterprise_id": eid,
            "kind": "production",
            "name": "喷涂线",
            "rated_kw": 50,
        },
    )
    await post(
        registry,
        "/facilities",
        {
            "id": f"{eid}-cf",
            "enterprise_id": eid,
            "kind": "control",
            "name": "活性炭吸附",
            "rated_kw": 30,
        },
    )
    await post(
        registry, "/devices", {"mn": f"{eid}MN".upper(), "enterprise_id": eid, "password": "123456"}
    )
    await post(
        registry,
        "/points",
        {
            "id": f"{eid}-p1",
            "enterprise_id": eid,
            "point_type": "control",
            "name": "主风机",
            "facility_id": f"{eid}-cf",
            "device_mn": f"{eid}MN".upper(),
            "circuit": 1,
            "rated_kw": 30,
            "max_load_kw": 28,
            "start_stop_kw": 3,
        },
    )


async def test_points_validate_thresholds_and_references(registry: Registry) -> None:
    await build_enterprise(registry, "a")
    client = registry.client
    base = {
        "enterprise_id": "a",
        "point_type": "control",
        "name": "水泵",
        "facility_id": "a-cf",
        "device_mn": "AMN",
    }
    low = await client.post(
        "/points", json=base | {"circuit": 2, "start_stop_kw": 5, "low_load_kw": 4}, headers=CITY
    )
    assert low.status_code == 422
    assert "low-load" in low.json()["errors"][0]["msg"]
    taken = await client.post("/points", json=base | {"circuit": 1}, headers=CITY)
    assert taken.status_code == 422
    assert taken.json()["errors"][0]["loc"] == ["body", "circuit"]
    wrong_kind = await client.post(
        "/points", json=base | {"circuit": 3, "facility_id": "a-pf"}, headers=CITY
    )
    assert wrong_kind.status_code == 422
    assert wrong_kind.json()["errors"][0]["loc"] == ["body", "facility_id"]
    total_with_facility = await client.post(
        "/points", json=base | {"circuit": 4, "point_type": "total"}, headers=CITY
    )
    assert total_with_facility.status_code == 422
    no_device = await client.post(
        "/points", json=base | {"circuit": 5, "device_mn": "NOPE"}, headers=CITY
    )
    assert no_device.json()["errors"][0]["loc"] == ["body", "device_mn"]


async def test_device_password_is_hashed_and_never_returned(registry: Registry) -> None:
    await build_enterprise(registry, "a")
    device = (await registry.client.get("/devices/AMN", headers=CITY)).json()
    assert device["has_password"] is True
    assert "password" not in str(device).replace("has_password", "")
    assert device["electricity_profile"] == "ecowatt-default"
    await wait_for(lambda: any(c.entity == "device" for c in registry.changes()))
    snapshot = [c for c in registry.changes() if c.entity == "device"][-1].snapshot
    assert snapshot is not None and verify_password("123456", snapshot["password_hash"])
    response = await registry.client.put(
        "/devices/AMN/password", json={"password": "654321"}, headers=CITY
    )
    assert response.status_code == 204
    await wait_for(
        lambda: [c for c in registry.changes() if c.entity == "device"][-1].revision == 2
    )
    snapshot = [c for c in registry.changes() if c.entity == "device"][-1].snapshot
    assert snapshot is not None and verify_password("654321", snapshot["password_hash"])
    history = (
        await registry.client.get(
            "/history", params={"entity": "device", "field": "password_hash"}, headers=CITY
        )
    ).json()
    assert history["items"][0]["changes"]["password_hash"] == {"old": "(set)", "new": "(set)"}


async def test_threshold_and_association_changes_are_kept_with_actor_and_reason(
    registry: Registry,
) -> None:
    await build_enterprise(registry, "a")
    officer = token(Role.OM_OPERATOR, subject="om-7", everything=True)
    response = await registry.client.patch(
        "/points/a-p1", json={"start_stop_kw": 4.5, "reason": "现场核定"}, headers=officer
    )
    assert response.status_code == 200, response.text
    await post(
        registry,
        "/control-groups",
        {
            "id": "g1",
            "enterprise_id": "a",
            "production_facility_ids": ["a-pf"],
            "control_facility_ids": ["a-cf"],
        },
    )
    await registry.client.patch(
        "/control-groups/g1",
        json={"required_mode": "any", "stop_lag_min": 20, "reason": "工艺调整"},
        headers=officer,
    )
    history = (
        await registry.client.get("/history", params={"enterprise_id": "a"}, headers=CITY)
    ).json()["items"]
    latest = history[0]
    assert latest["entity"] == "control_group" and latest["operation"] == "update"
    assert latest["changes"] == {
        "required_mode": {"old": "all", "new": "any"},
        "stop_lag_min": {"old": 5, "new": 20},
    }
    assert latest["actor"] == "om-7" and latest["reason"] == "工艺调整"
    threshold = (
        await registry.client.get(
            "/history", params={"entity_id": "a-p1", "field": "start_stop_kw"}, headers=CITY
        )
    ).json()["items"]
    assert threshold[0]["changes"]["start_stop_kw"] == {"old": 3.0, "new": 4.5}
    assert threshold[0]["actor"] == "om-7" and threshold[0]["reason"] == "现场核定"
    created = next(
        h for h in history if h["entity"] == "control_group" and h["operation"] == "create"
    )
    assert created["changes"]["production_facility_ids"]["new"] == ["a-pf"]


async def test_control_groups_check_sides_and_ownership(registry: Registry) -> None:
    await build_enterprise(registry, "a")
    await build_enterprise(registry, "b")
    client = registry.client
    swapped = await client.post(
        "/control-groups",
        json={
            "enterprise_id": "a",
            "production_facility_ids": ["a-cf"],
            "control_facility_ids": ["a-pf"],
        },
        headers=CITY,
    )
    assert swapped.status_code == 422
    foreign = await client.post(
        "/control-groups",
        json={
            "enterprise_id": "a",
            "production_facility_ids": ["a-pf"],
            "control_facility_ids": ["b-cf"],
        },
        headers=CITY,
    )
    assert foreign.status_code == 422
    assert "another enterprise" in foreign.json()["errors"][0]["msg"]
    dates = await client.post(
        "/control-groups",
        json={
            "enterprise_id": "a",
            "production_facility_ids": ["a-pf"],
            "control_facility_ids": ["a-cf"],
            "valid_from": "2025-01-02",
            "valid_to": "2025-01-01",
        },
        headers=CITY,
    )
    assert dates.status_code == 422
    in_use = await client.delete("/facilities/a-cf", headers=CITY)
    assert in_use.status_code == 409 and "points" in in_use.json()["detail"]


async def test_district_officer_sees_and_changes_only_their_districts(registry: Registry) -> None:
    await build_enterprise(registry, "a", district="610112")
    await build_enterprise(registry, "b", district="610113")
    officer = token(Role.DISTRICT_OFFICER, districts=("610112",))
    client = registry.client
    listed = (await client.get("/enterprises", headers=officer)).json()
    assert [e["id"] for e in listed["items"]] == ["a"] and listed["total"] == 1
    forced = (
        await client.get("/enterprises", params={"district": "610113"}, headers=officer)
    ).json()
    assert forced["total"] == 0, "the query string cannot widen the scope"
    assert (await client.get("/enterprises/b", headers=officer)).status_code == 404
    assert (await client.get("/points/b-p1", headers=officer)).status_code == 404
    assert (await client.get("/devices/BMN", headers=officer)).status_code == 404
    assert {p["id"] for p in (await client.get("/points", headers=officer)).json()["items"]} == {
        "a-p1"
    }
    assert (
        await client.patch("/points/b-p1", json={"start_stop_kw": 1}, headers=officer)
    ).status_code == 404
    assert (
        await client.patch("/enterprises/a", json={"district_code": "610113"}, headers=officer)
    ).status_code == 403
    moved = await client.post(
        "/enterprises", json=enterprise_body(district_code="610113"), headers=officer
    )
    assert moved.status_code == 403
    foreign_child = await client.post(
        "/facilities", json={"enterprise_id": "b", "kind": "control", "name": "x"}, headers=officer
    )
    assert foreign_child.status_code == 404
    ok = await client.patch("/points/a-p1", json={"start_stop_kw": 2}, headers=officer)
    assert ok.status_code == 200
    city_scope = token(Role.DISTRICT_OFFICER, districts=("610100",))
    assert (await client.get("/enterprises", headers=city_scope)).json()["total"] == 2


async def test_enterprise_user_sees_only_their_enterprise_and_cannot_write(
    registry: Registry,
) -> None:
    await build_enterprise(registry, "a")
    await build_enterprise(registry, "b")
    user = token(Role.ENTERPRISE_USER, enterprises=("b",))
    client = registry.client
    assert [e["id"] for e in (await client.get("/enterprises", headers=user)).json()["items"]] == [
        "b"
    ]
    assert {f["id"] for f in (await client.get("/facilities", headers=user)).json()["items"]} == {
        "b-pf",
        "b-cf",
    }
    assert (await client.get("/facilities/a-pf", headers=user)).status_code == 404
    history = (await client.get("/history", headers=user)).json()["items"]
    assert history and {h["enterprise_id"] for h in history} == {"b"}
    assert (
        await client.patch("/points/b-p1", json={"start_stop_kw": 1}, headers=user)
    ).status_code == 403


async def test_pagination_sorting_and_filtering(registry: Registry) -> None:
    client = registry.client
    rows = [("z1", "厂A", "610112", "3360", "A"), ("z2", "厂B", "610113", "3391", "B"),
            ("z3", "厂C", "610112", "2110", "B"), ("z4", "厂D", "610116", "3031", "D"),
            ("z5", "厂E", "610112", "3392", "none")]  # fmt: skip
    for eid, name, district, industry, grade in rows:
        await post(
            registry,
            "/enterprises",
            enterprise_body(
                id=eid,
                name=name,
                district_code=district,
                industry_code=industry,
                performance_grade=grade,
            ),
        )
    page1 = await client.get("/enterprises", params={"page_size": 2, "sort": "-id"}, headers=CITY)
    assert page1.status_code == 400, "id is not a sortable field"
    page1 = (
        await client.get(
            "/enterprises", params={"page_size": 2, "sort": "district_code,-name"}, headers=CITY
        )
    ).json()
    page2 = (
        await client.get(
            "/enterprises",
            params={"page_size": 2, "page": 2, "sort": "district_code,-name"},
            headers=CITY,
        )
    ).json()
    page3 = (
        await client.get(
            "/enterprises",
            params={"page_size": 2, "page": 3, "sort": "district_code,-name"},
            headers=CITY,
        )
    ).json()
    expected = [r[0] for r in sorted(rows, key=lambda r: r[1], reverse=True)]
    expected = sorted(expected, key=lambda e: {r[0]: r[2] for r in rows}[e])
    assert [e["id"] for p in (page1, page2, page3) for e in p["items"]] == expected
    assert page1["total"] == 5 and page1["pages"] == 3 and len(page3["items"]) == 1
    castings = (await client.get("/enterprises", params={"industry": "339"}, headers=CITY)).json()
    assert {e["id"] for e in castings["items"]} == {"z2", "z5"}
    manufacturing = (
        await client.get("/enterprises", params={"industry": "C", "grade": "B"}, headers=CITY)
    ).json()
    assert {e["id"] for e in manufacturing["items"]} == {"z2", "z3"}
    by_district = (
        await client.get(
            "/enterprises", params=[("district", "610113"), ("district", "610116")], headers=CITY
        )
    ).json()
    assert {e["id"] for e in by_district["items"]} == {"z2", "z4"}
    text = (await client.get("/enterprises", params={"q": "厂C"}, headers=CITY)).json()
    assert [e["id"] for e in text["items"]] == ["z3"]
    zone = (await client.get("/enterprises", params={"zone": "XA-GX"}, headers=CITY)).json()
    assert zone["total"] == 0


async def test_partial_changes_are_checked_against_the_whole_entity(registry: Registry) -> None:
    await build_enterprise(registry, "a")
    await post(
        registry,
        "/facilities",
        {"id": "a-cf2", "enterprise_id": "a", "kind": "control", "name": "二号除尘"},
    )
    client = registry.client
    moved = await client.patch("/points/a-p1", json={"facility_id": "a-cf2"}, headers=CITY)
    assert moved.status_code == 200, moved.text
    wrong = await client.patch("/points/a-p1", json={"facility_id": "a-pf"}, headers=CITY)
    assert wrong.status_code == 422, "a control point cannot move onto a production facility"
    over = await client.patch("/points/a-p1", json={"start_stop_kw": 29}, headers=CITY)
    assert over.status_code == 422, "above the stored maximum load (28 kW)"
    assert "maximum load" in over.json()["errors"][0]["msg"]
    immovable = await client.patch("/facilities/a-pf", json={"kind": "control"}, headers=CITY)
    assert immovable.status_code == 422
    await build_enterprise(registry, "b")
    rebound = await client.patch("/devices/AMN", json={"enterprise_id": "b"}, headers=CITY)
    assert rebound.status_code == 422, "its point a-p1 belongs to enterprise a"
    assert "a-p1" in rebound.json()["errors"][0]["msg"]


async def test_one_enterprise_archive_gathers_everything(registry: Registry) -> None:
    await build_enterprise(registry, "a")
    await build_enterprise(registry, "b")
    await post(
        registry,
        "/control-groups",
        {"id": "g1", "enterprise_id": "a", "production_facility_ids": ["a-pf"],
         "control_facility_ids": ["a-cf"]},
    )  # fmt: skip
    response = await registry.client.get("/enterprises/a/archive", headers=CITY)
    assert response.status_code == 200, response.text
    archive = response.json()
    assert archive["enterprise"]["id"] == "a"
    assert archive["enterprise"]["point_count"] == 1
    assert archive["enterprise"]["control_facility_count"] == 1
    assert {f["id"] for f in archive["facilities"]} == {"a-pf", "a-cf"}
    assert [g["id"] for g in archive["control_groups"]] == ["g1"]
    assert [d["mn"] for d in archive["devices"]] == ["AMN"]
    assert [p["id"] for p in archive["points"]] == ["a-p1"]
    officer = token(Role.DISTRICT_OFFICER, districts=("610113",))
    assert (await registry.client.get("/enterprises/a/archive", headers=officer)).status_code == 404


async def test_facility_codes_are_unique_inside_an_enterprise(registry: Registry) -> None:
    await build_enterprise(registry, "a")
    await build_enterprise(registry, "b")
    body = {"enterprise_id": "a", "kind": "control", "name": "除尘", "code": "TA001"}
    await post(registry, "/facilities", body)
    again = await registry.client.post("/facilities", json=body, headers=CITY)
    assert again.status_code == 422
    assert again.json()["errors"][0]["loc"] == ["body", "code"]
    await post(registry, "/facilities", body | {"enterprise_id": "b"})  # another enterprise
