"""Partner datasets: cursors never skip or repeat a row under concurrent writes; access."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest
from city import SmallCity, local, today
from conftest import Harness
from ecowatt_kernel.identity import DataScope, Identity, Role
from ecowatt_kernel.problems import Forbidden
from ecowatt_reporting.datasets.service import DATASETS, check_access, read_page
from ecowatt_reporting.events.models import COMPLIANCE_HOUR
from sqlalchemy import text, update
from sqlalchemy.dialects.postgresql import insert

WRITERS, TRANSACTIONS, ROWS = 4, 12, 5


async def test_cursor_never_skips_or_repeats_under_concurrent_writes(
    harness: Harness, city: SmallCity
) -> None:
    h = harness
    database = h.runtime.database
    task = f"cursor-{city.tag}"
    base = local(today() - timedelta(days=9))
    rng = random.Random(3)
    written: list[tuple[str, str, str, str]] = []

    async def writer(index: int) -> None:
        for n in range(TRANSACTIONS):
            rows = [
                {
                    "enterprise_id": city.e("E9"),
                    "task_id": task,
                    "target_id": f"w{index}",
                    "hour_start": base + timedelta(hours=n * ROWS + k),
                    "verdict": "compliant",
                    "evidence": {},
                    "produced_at": base,
                }
                for k in range(ROWS)
            ]
            async with database.transaction() as session:
                await session.execute(insert(COMPLIANCE_HOUR).values(rows))
                # Hold the transaction open a while: later transactions commit first.
                await session.execute(text("SELECT pg_sleep(:s)"), {"s": rng.uniform(0, 0.15)})
            written.extend(
                (r["enterprise_id"], r["task_id"], r["target_id"], r["hour_start"].isoformat())
                for r in rows
            )

    seen: list[tuple[str, str, str, str]] = []
    cursor: str | None = None
    dataset = DATASETS["compliance"]

    async def read_all() -> bool:
        nonlocal cursor
        got_any = False
        while True:
            async with database.session() as session:
                page = await read_page(
                    session, dataset=dataset, scope=DataScope(all=True), cursor=cursor, limit=7,
                    district="610199",
                )  # fmt: skip
            cursor = page.next_cursor
            for item in page.items:
                if item["task_id"] == task:
                    seen.append(
                        (item["enterprise_id"], item["task_id"], item["target_id"],
                         item["hour_start"].isoformat())
                    )  # fmt: skip
                    got_any = True
            if not page.has_more:
                return got_any

    writers = asyncio.gather(*(writer(i) for i in range(WRITERS)))
    while not writers.done():
        await read_all()
        await asyncio.sleep(0.02)
    await writers
    await asyncio.sleep(0.2)
    await read_all()
    assert len(written) == WRITERS * TRANSACTIONS * ROWS
    assert len(seen) == len(set(seen)), "a row was handed out twice"
    assert sorted(seen) == sorted(written), "a row was skipped"

    # A changed row comes again, once, as its new version.
    async with database.transaction() as session:
        await session.execute(
            update(COMPLIANCE_HOUR)
            .where(COMPLIANCE_HOUR.c.task_id == task, COMPLIANCE_HOUR.c.target_id == "w0",
                   COMPLIANCE_HOUR.c.hour_start == base)
            .values(verdict="non_compliant", txid=text("pg_current_xact_id()::text::bigint"))
        )  # fmt: skip
    async with database.session() as session:
        page = await read_page(
            session, dataset=dataset, scope=DataScope(all=True), cursor=cursor, limit=50
        )
    again = [i for i in page.items if i["task_id"] == task]
    assert [(i["target_id"], i["verdict"]) for i in again] == [("w0", "non_compliant")]


async def test_dataset_api_access_and_paging(harness: Harness, city: SmallCity) -> None:
    h = harness
    r = await h.client.get("/datasets", headers=h.headers(Role.PARTNER))
    assert r.status_code == 200
    listed = {d["name"]: d for d in r.json()["datasets"]}
    assert listed["energy_15min"]["grant"] == "telemetry"
    assert listed["energy_15min"]["path"] == "/datasets/energy_15min"
    # a partner role without a key's granted datasets (not even an api_key identity)
    r = await h.client.get("/datasets/energy_15min", headers=h.headers(Role.PARTNER))
    assert r.status_code == 403
    key = partner_key(datasets={"archive"}, districts=["610113"])
    r = await h.client.get("/datasets/energy_15min", headers=h.bearer(key))
    assert r.status_code == 403 and "`telemetry`" in r.json()["detail"]
    r = await h.client.get("/datasets/enterprises", headers=h.bearer(key))
    assert r.status_code == 200, r.text
    assert {i["district_code"] for i in r.json()["items"]} == {"610113"}  # the key's districts
    r = await h.client.get(
        "/datasets/enterprises", params={"district": "610116"}, headers=h.bearer(key)
    )
    assert r.status_code == 200 and r.json()["items"] == []  # asking wider widens nothing
    r = await h.client.get(
        "/datasets/enterprises", params={"district": "999999"}, headers=h.bearer(key)
    )
    assert r.status_code == 200 and r.json()["items"] == []  # a filter: any code, no match
    r = await h.client.get(
        "/datasets/enterprises", headers=h.headers(Role.ENTERPRISE_USER, enterprises=["x"])
    )
    assert r.status_code == 403
    officer = h.headers(Role.DISTRICT_OFFICER, districts=["610113"])
    items, cursor = [], None
    for _ in range(10):
        params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        r = await h.client.get("/datasets/enterprises", params=params, headers=officer)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            break
    assert sorted(i["id"] for i in items) == sorted([city.e("E1"), city.e("E2")])
    r = await h.client.get("/datasets/points", params={"cursor": "garbage"}, headers=officer)
    assert r.status_code == 400 and "cursor" in r.json()["detail"]
    r = await h.client.get("/datasets/nothing", headers=officer)
    assert r.status_code == 404
    r = await h.client.get("/datasets/latest_values", params={"limit": 500}, headers=officer)
    assert all(i["enterprise_id"] in (city.e("E1"), city.e("E2")) for i in r.json()["items"])


def partner_key(*, datasets: set[str], districts: list[str] | None = None) -> Identity:
    """An API key's identity as the gateway forwards it (auth's `KeyRecord.identity`)."""
    return Identity(
        subject="apikey:0123456789abcdef",
        kind="api_key",
        roles=frozenset({Role.PARTNER}),
        scope=DataScope(districts=frozenset(districts)) if districts else DataScope(all=True),
        datasets=frozenset(datasets),
    )


def test_partner_keys_read_the_datasets_their_grants_cover() -> None:
    alarms_only = partner_key(datasets={"alarms"})
    check_access(alarms_only, DATASETS["alarms"])
    for name in ("energy_15min", "latest_values", "enterprises", "points", "compliance"):
        with pytest.raises(Forbidden):
            check_access(alarms_only, DATASETS[name])
    everything = partner_key(datasets={"archive", "telemetry", "alarms", "control"})
    for dataset in DATASETS.values():
        check_access(everything, dataset)
    # the partner role alone (a person's token, not a key) reads nothing
    person = Identity(subject="p", roles=frozenset({Role.PARTNER}), scope=DataScope(all=True))
    for dataset in DATASETS.values():
        with pytest.raises(Forbidden):
            check_access(person, dataset)


async def test_datasets_documented_in_openapi(harness: Harness) -> None:
    r = await harness.client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    for name, dataset in DATASETS.items():
        page = spec["paths"][f"/datasets/{name}"]["get"]
        example = page["responses"]["200"]["content"]["application/json"]["example"]
        assert example["dataset"] == name and example["items"] == [dataset.example]
        assert f"`{dataset.grant}`" in page["responses"]["403"]["description"]
    example = spec["paths"]["/datasets/energy_15min"]["get"]["responses"]["200"]
    assert example["content"]["application/json"]["example"]["items"][0]["energy_kwh"] == 5.31
    assert {"/series/{subject_kind}/{subject_id}", "/statistics", "/reports"} <= set(spec["paths"])
