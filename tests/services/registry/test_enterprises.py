"""Enterprises: CRUD, field validation (credit code check character), grade history."""

from __future__ import annotations

import pytest
from ecowatt_kernel.identity import Role

from .conftest import ADMIN, CITY, Registry, credit_code, enterprise_body, token, wait_for

pytestmark = pytest.mark.integration

# A well-known example code, and one built here; the check characters are computed by the
# test's own implementation of GB 32100 (weights 3^(i-1) mod 31), not by the service.
VALID = credit_code("91610112MA6U0B1A0")
KNOWN_VALID = "91350100M000100Y43"


def test_independent_check_digit_agrees_with_published_example() -> None:
    assert credit_code(KNOWN_VALID[:17]) == KNOWN_VALID


async def test_create_read_update_delete_enterprise(registry: Registry) -> None:
    client = registry.client
    created = await client.post(
        "/enterprises", json=enterprise_body(credit_code=VALID, id="e-1"), headers=CITY
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"] == "e-1"
    assert body["credit_code_valid"] is True
    assert body["district_name"] == "未央区"
    assert body["industry_section"] == "C" and body["industry_division"] == "33"
    assert body["industry_group"] == "336" and body["industry_level"] == "class"
    assert body["zone_name"] == "经开区"
    assert body["revision"] == 1 and body["created_by"] == "city-1"

    patched = await client.patch(
        "/enterprises/e-1",
        json={"production_status": "suspended", "reason": "停产整治"},
        headers=CITY,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["production_status"] == "suspended"
    assert patched.json()["revision"] == 2

    same = await client.patch(
        "/enterprises/e-1", json={"production_status": "suspended"}, headers=CITY
    )
    assert same.json()["revision"] == 2, "an unchanged value is no change"

    await wait_for(lambda: len([c for c in registry.changes() if c.entity_id == "e-1"]) == 2)
    assert (await client.delete("/enterprises/e-1", headers=CITY)).status_code == 204
    assert (await client.get("/enterprises/e-1", headers=CITY)).status_code == 404
    await wait_for(lambda: any(c.operation == "delete" for c in registry.changes()))
    deleted = next(c for c in registry.changes() if c.operation == "delete")
    assert deleted.entity_id == "e-1" and deleted.revision == 3 and deleted.snapshot is None
    # Re-created under the same id, it continues after the delete's revision, so that a
    # consumer keeping the highest revision per entity takes it.
    again = await client.post("/enterprises", json=enterprise_body(id="e-1"), headers=CITY)
    assert again.status_code == 201 and again.json()["revision"] == 4


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        (VALID[:17] + ("0" if VALID[17] != "0" else "1"), "check character"),
        ("91610112MA6U0B1A", "18 characters"),
        ("91610112MA6U0B1AI" + "0", "not allowed"),
        ("9161O112MA6U0B1A01", "not allowed"),
        ("91610A12MA6U0B1A01", "digits"),
    ],
)
async def test_invalid_credit_codes_are_field_problems(
    registry: Registry, code: str, fragment: str
) -> None:
    response = await registry.client.post(
        "/enterprises", json=enterprise_body(credit_code=code), headers=CITY
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert errors[0]["loc"] == ["body", "credit_code"]
    assert fragment in errors[0]["msg"]


async def test_other_field_problems(registry: Registry) -> None:
    response = await registry.client.post(
        "/enterprises",
        json=enterprise_body(
            district_code="610100", industry_code="9999", zone="XA-NOPE", latitude=95
        ),
        headers=CITY,
    )
    assert response.status_code == 422
    fields = {e["loc"][-1] for e in response.json()["errors"]}
    assert fields == {"district_code", "industry_code", "zone", "latitude"}


async def test_credit_code_is_unique(registry: Registry) -> None:
    client = registry.client
    assert (
        await client.post("/enterprises", json=enterprise_body(credit_code=VALID), headers=CITY)
    ).status_code == 201
    again = await client.post(
        "/enterprises", json=enterprise_body(credit_code=VALID, name="另一家"), headers=CITY
    )
    assert again.status_code == 409
    assert again.json()["errors"][0]["loc"] == ["body", "credit_code"]


async def test_an_empty_credit_code_and_upper_level_industry_are_accepted(
    registry: Registry,
) -> None:
    response = await registry.client.post(
        "/enterprises", json=enterprise_body(credit_code="", industry_code="33"), headers=CITY
    )
    assert response.status_code == 201, response.text
    assert response.json()["credit_code"] is None
    assert response.json()["credit_code_valid"] is False
    assert response.json()["industry_level"] == "division"


async def test_grade_history_keeps_dated_periods(registry: Registry) -> None:
    client = registry.client
    await client.post(
        "/enterprises",
        json=enterprise_body(id="g-1", performance_grade="B", performance_grade_since="2024-01-01"),
        headers=CITY,
    )
    await client.patch(
        "/enterprises/g-1",
        json={
            "performance_grade": "D",
            "performance_grade_since": "2025-03-01",
            "reason": "违法降级",
        },
        headers=CITY,
    )
    grades = (await client.get("/enterprises/g-1/grades", headers=CITY)).json()
    assert [(g["grade"], g["valid_from"], g["valid_to"]) for g in grades] == [
        ("D", "2025-03-01", None),
        ("B", "2024-01-01", "2025-03-01"),
    ]
    assert grades[0]["reason"] == "违法降级" and grades[0]["actor"] == "city-1"


async def test_writes_need_an_editing_role(registry: Registry) -> None:
    reader = token(Role.ENTERPRISE_USER, enterprises=("x",))
    response = await registry.client.post("/enterprises", json=enterprise_body(), headers=reader)
    assert response.status_code == 403
    assert (await registry.client.get("/enterprises")).status_code == 401
    partner = token(Role.PARTNER, everything=True)
    assert (await registry.client.post("/admin/republish", headers=partner)).status_code == 403
    assert (await registry.client.post("/admin/republish", headers=ADMIN)).status_code == 200


async def test_openapi_documents_every_entity(registry: Registry) -> None:
    schema = (await registry.client.get("/openapi.json")).json()
    for path in (
        "enterprises",
        "production-lines",
        "facilities",
        "devices",
        "points",
        "control-groups",
    ):
        assert {"get", "post"} <= set(schema["paths"][f"/{path}"])
        assert {"get", "patch", "delete"} <= set(schema["paths"][f"/{path}/{{key}}"])
        assert "get" in schema["paths"][f"/{path}.xlsx"]
    for path in (
        "/import",
        "/import/template",
        "/export/archive.xlsx",
        "/history",
        "/admin/republish",
    ):
        assert path in schema["paths"]
    device = schema["components"]["schemas"]["DeviceRead"]["properties"]
    assert "password_hash" not in device and "password" not in device
