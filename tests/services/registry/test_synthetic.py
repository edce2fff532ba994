"""The synthetic city: deterministic by seed, defects as configured, references intact."""

from __future__ import annotations

from collections import Counter

import pytest
from ecowatt_kernel.passwords import verify_password
from ecowatt_kernel.synthetic import device_password
from ecowatt_registry.reference import tables
from ecowatt_registry.synthetic.generator import CityOptions, generate_city
from sqlalchemy import text

from .conftest import ADMIN, CITY, Registry, wait_for

pytestmark = pytest.mark.integration
ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def check_ok(code: str) -> bool:
    weights = [pow(3, i, 31) for i in range(17)]
    total = sum(ALPHABET.index(c) * w for c, w in zip(code[:17], weights, strict=True))
    return len(code) == 18 and code[17] == ALPHABET[(31 - total % 31) % 31]


def test_same_seed_same_city_other_seed_other_city() -> None:
    a = generate_city(CityOptions(enterprises=30, seed=7))
    b = generate_city(CityOptions(enterprises=30, seed=7))
    c = generate_city(CityOptions(enterprises=30, seed=8))
    assert a.states == b.states
    assert a.states["enterprise"] != c.states["enterprise"]


def test_city_is_plausible_and_scales() -> None:
    city = generate_city(CityOptions(enterprises=3000, seed=1, defect_share=0))
    points = city.states["point"]
    assert 25_000 <= len(points) <= 35_000, len(points)
    xian = {d.code for d in tables.xian_counties()}
    assert {e["district_code"] for e in city.states["enterprise"]} <= xian
    assert len({e["district_code"] for e in city.states["enterprise"]}) == 13
    assert {e["zone"] for e in city.states["enterprise"] if e["zone"]} <= set(tables.zones())
    assert all(
        tables.industries()[e["industry_code"]].level == "class" for e in city.states["enterprise"]
    )
    assert all(check_ok(e["credit_code"]) for e in city.states["enterprise"])
    assert len({e["credit_code"] for e in city.states["enterprise"]}) == 3000
    mns = [d["mn"] for d in city.states["device"]]
    assert len(set(mns)) == len(mns) and all(len(m) == 24 and int(m, 16) >= 0 for m in mns)
    slots = Counter((p["device_mn"], p["circuit"]) for p in points)
    assert max(slots.values()) == 1 and max(p["circuit"] for p in points) <= 8
    for p in points:
        assert p["rated_kw"] > 0 and p["start_stop_kw"] <= p["max_load_kw"] <= p["rated_kw"]
        if p["low_load_kw"] is not None:
            assert p["start_stop_kw"] < p["low_load_kw"] <= p["max_load_kw"]


def test_defect_shares_are_honoured() -> None:
    n, share = 2000, 0.1
    city = generate_city(CityOptions(enterprises=n, seed=3, defect_share=share))
    s = city.states
    with_total = {p["enterprise_id"] for p in s["point"] if p["point_type"] == "total"}
    control_facilities = {
        f["id"]: f["enterprise_id"] for f in s["facility"] if f["kind"] == "control"
    }
    metered = {p["facility_id"] for p in s["point"]}
    unmetered = {e for f, e in control_facilities.items() if f not in metered}
    no_threshold = {
        p["enterprise_id"]
        for p in s["point"]
        if p["point_type"] == "control" and p["start_stop_kw"] is None
    }
    bad_code = {
        e["id"] for e in s["enterprise"] if not e["credit_code"] or not check_ok(e["credit_code"])
    }
    not_class = {
        e["id"] for e in s["enterprise"] if tables.industries()[e["industry_code"]].level != "class"
    }
    observed = {
        "missing_total_meter": n - len(with_total),
        "control_without_point": len(unmetered),
        "missing_threshold": len(no_threshold),
        "bad_credit_code": len(bad_code),
        "industry_not_class": len(not_class),
    }
    for name, count in observed.items():
        assert abs(count / n - share) < 0.03, (name, count)
    assert observed["missing_total_meter"] == len(city.defects["missing_total_meter"])


async def test_seeded_city_in_the_archive(registry: Registry) -> None:
    response = await registry.client.post(
        "/admin/synthetic-city",
        json={"enterprises": 40, "seed": 11, "defect_share": 0.2},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    assert (
        await registry.client.post(
            "/admin/synthetic-city", json={"enterprises": 40, "seed": 12}, headers=ADMIN
        )
    ).status_code == 409
    assert (await registry.client.get("/admin/synthetic-city", headers=CITY)).status_code == 403
    recorded = (await registry.client.get("/admin/synthetic-city", headers=ADMIN)).json()
    assert recorded["seed"] == 11 and recorded["enterprises"] == 40
    async with registry.context.database.session() as session:
        orphans = await session.scalar(
            text(
                "SELECT count(*) FROM point p LEFT JOIN device d ON d.mn = p.device_mn "
                "LEFT JOIN facility f ON f.id = p.facility_id "
                "WHERE (p.device_mn IS NOT NULL AND d.mn IS NULL) "
                "OR (p.facility_id IS NOT NULL AND f.id IS NULL) "
                "OR (p.point_type IN ('production','control') AND p.facility_id IS NULL)"
            )
        )
        assert orphans == 0
        enterprises = await session.scalar(text("SELECT count(*) FROM enterprise"))
        assert enterprises == 40
    devices = (
        await registry.client.get("/devices", params={"page_size": 5}, headers=ADMIN)
    ).json()["items"]
    await wait_for(lambda: sum(1 for c in registry.changes() if c.entity == "device") >= 5)
    hashes = {
        c.entity_id: c.snapshot["password_hash"]
        for c in registry.changes()
        if c.entity == "device" and c.snapshot
    }
    for device in devices:
        assert verify_password(device_password(11, device["mn"]), hashes[device["mn"]])
    again = await registry.client.post(
        "/admin/synthetic-city",
        json={"enterprises": 40, "seed": 11, "defect_share": 0.2},
        headers=ADMIN,
    )
    assert all(w["created"] == 0 and w["updated"] == 0 for w in again.json()["written"].values())


async def test_start_up_seeds_an_empty_archive_only(empty_database: str, redis_url: str) -> None:
    import httpx
    from asgi_lifespan import LifespanManager
    from ecowatt_kernel.app import create_app
    from ecowatt_registry.service import SERVICE

    from .conftest import registry_settings

    for seed in (5, 6):
        settings = registry_settings(
            empty_database,
            redis_url,
            registry_seed_city=True,
            registry_seed=seed,
            registry_seed_enterprises=4,
        )
        app = create_app(SERVICE, settings=settings)
        async with LifespanManager(app, startup_timeout=60) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
                task = app.state.context.state["seed_task"]
                await task
                listed = (await client.get("/enterprises", headers=ADMIN)).json()
                assert listed["total"] == 4
                recorded = (await client.get("/admin/synthetic-city", headers=ADMIN)).json()
                assert recorded["seed"] == 5, "the second start found the archive full"


async def test_command_line_tools(empty_database: str) -> None:
    import asyncio
    import os
    import subprocess
    import sys

    from ecowatt_kernel.db import async_url
    from sqlalchemy.ext.asyncio import create_async_engine

    env = {**os.environ, "ECOWATT_DATABASE_URL": empty_database, "ECOWATT_ENVIRONMENT": "test"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=120
        )

    seeded = await asyncio.to_thread(
        run, "ecowatt_registry.synthetic", "--enterprises", "3", "--seed", "9"
    )
    assert seeded.returncode == 0, seeded.stderr
    refused = await asyncio.to_thread(
        run, "ecowatt_registry.synthetic", "--enterprises", "3", "--seed", "10"
    )
    assert refused.returncode != 0 and "not empty" in refused.stderr
    republished = await asyncio.to_thread(run, "ecowatt_registry.republish")
    assert republished.returncode == 0, republished.stderr
    engine = create_async_engine(async_url(empty_database))
    try:
        async with engine.connect() as connection:
            tables = (
                "enterprise",
                "production_line",
                "facility",
                "device",
                "point",
                "control_group",
            )
            rows = 0
            for table in tables:
                rows += await connection.scalar(text(f"SELECT count(*) FROM registry.{table}"))
            enterprises = await connection.scalar(text("SELECT count(*) FROM registry.enterprise"))
    finally:
        await engine.dispose()
    assert enterprises == 3
    assert republished.stdout.startswith(f"{rows} snapshots written to the outbox")
