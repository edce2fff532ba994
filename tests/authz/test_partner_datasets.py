"""A partner reads reporting's datasets with an API key through the gateway, as
docs/partners.md shows: the key's datasets travel in the signed identity, the gateway and
reporting both check them, and the key's districts limit the rows. Also: the dataset names
of the permission matrix and of reporting are one model."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from ecowatt_auth.authz.matrix import ANY_KEY, DATASETS, MATRIX, REPORTING_DATASETS, Matcher
from ecowatt_auth.service import SERVICE as AUTH
from ecowatt_kernel.contracts import PointReading, encode
from ecowatt_registry.service import SERVICE as REGISTRY
from ecowatt_reporting.datasets.service import DATASETS as REPORTING
from ecowatt_reporting.service import SERVICE as REPORTING_SERVICE

from tests.services.auth.conftest import Platform, isolated_redis_url, start_platform


def test_reporting_datasets_are_granted_by_the_matrix_datasets() -> None:
    assert {name: d.grant for name, d in REPORTING.items()} == REPORTING_DATASETS
    assert set(REPORTING_DATASETS.values()) <= DATASETS.keys()
    unknown = [r for r in MATRIX if r.dataset not in (None, ANY_KEY, *DATASETS)]
    assert not unknown, f"rows naming a dataset a key cannot be granted: {unknown}"
    matcher = Matcher()
    for name, grant in REPORTING_DATASETS.items():
        rule = matcher.match("GET", f"/api/reporting/datasets/{name}")
        assert rule is not None and rule.dataset == grant, name
        assert rule.allows_key([grant]) and not rule.allows_key(set(DATASETS) - {grant})


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str) -> AsyncIterator[Platform]:
    from ecowatt_kernel.db import scratch_database

    async with scratch_database(database_url) as url:
        async for started in start_platform(
            url, isolated_redis_url(redis_url), (AUTH, REGISTRY, REPORTING_SERVICE)
        ):
            yield started


async def issue_key(admin: httpx.AsyncClient, **body: Any) -> str:
    response = await admin.post(
        "/api/auth/api-keys",
        json={
            "name": f"智慧环保指挥中心-{uuid.uuid4().hex[:4]}",
            "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            **body,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["key"]  # type: ignore[no-any-return]


async def read_all(client: httpx.AsyncClient, key: str, dataset: str) -> list[dict[str, Any]]:
    """Every row of `dataset` the key sees, following `next_cursor` (as a partner would)."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = await client.get(
            f"/api/reporting/datasets/{dataset}", params=params, headers={"X-API-Key": key}
        )
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        if not page.json()["has_more"]:
            return items
        params["cursor"] = page.json()["next_cursor"]


@pytest.mark.integration
async def test_a_partner_reads_energy_15min_with_an_api_key(platform: Platform) -> None:
    admin = await platform.admin()
    client = platform.client()
    tag = uuid.uuid4().hex[:6]
    points: dict[str, tuple[str, str]] = {}  # district → (enterprise id, point id)
    for district in ("610112", "610113"):
        enterprise = await admin.post(
            "/api/registry/enterprises",
            json={"name": f"合作方测试{tag}{district}", "district_code": district},
        )
        assert enterprise.status_code == 201, enterprise.text
        point = await admin.post(
            "/api/registry/points",
            json={
                "enterprise_id": enterprise.json()["id"],
                "point_type": "total",
                "name": "总电",
            },
        )
        assert point.status_code == 201, point.text
        points[district] = (enterprise.json()["id"], point.json()["id"])

    # a reading of each point, on the bus as the ingest would publish it
    quarter = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    quarter = quarter.replace(minute=quarter.minute - quarter.minute % 15)
    readings = [
        PointReading(
            enterprise_id=enterprise_id,
            point_id=point_id,
            mn=f"MN{tag}{district}",
            cn="2051",
            interval="minute",
            data_time=quarter + timedelta(minutes=minute),
            values={"active_power_kw": 20.0, "energy_delta_kwh": 0.5},
        )
        for district, (enterprise_id, point_id) in points.items()
        for minute in range(3)
    ]
    await platform.infrastructure.bus.publish(
        [encode(r, topic=PointReading.topic) for r in readings]
    )
    ours = {point_id for _, point_id in points.values()}

    async def arrived() -> bool:
        """Both points' bucket is written and both enterprises are in reporting's archive."""
        rows = await admin.get("/api/reporting/datasets/energy_15min", params={"limit": 5000})
        enterprises = await admin.get("/api/reporting/datasets/enterprises", params={"limit": 5000})
        return {i["point_id"] for i in rows.json()["items"]} >= ours and {
            i["id"] for i in enterprises.json()["items"]
        } >= {enterprise_id for enterprise_id, _ in points.values()}

    await platform.wait_for(arrived, limit_s=60)

    # a key granted `telemetry` for the whole city reads every point's 15-minute energy
    city = await issue_key(admin, datasets=["telemetry"], all_districts=True)
    rows = [r for r in await read_all(client, city, "energy_15min") if r["point_id"] in ours]
    assert {r["point_id"] for r in rows} == ours
    assert all(r["energy_kwh"] == pytest.approx(1.5) and r["samples"] == 3 for r in rows)
    latest = await read_all(client, city, "latest_values")
    assert {r["point_id"] for r in latest} >= ours

    # a key of one district sees only that district's rows, whatever it asks for
    district = await issue_key(admin, datasets=["telemetry"], districts=["610112"])
    own_enterprise, own_point = points["610112"]
    rows = await read_all(client, district, "energy_15min")
    assert rows and {r["enterprise_id"] for r in rows} == {own_enterprise}
    assert own_point in {r["point_id"] for r in rows}
    wider = await client.get(
        "/api/reporting/datasets/energy_15min",
        params={"district": "610113"},
        headers={"X-API-Key": district},
    )
    assert wider.status_code == 200 and wider.json()["items"] == []

    # a key without the dataset: refused at the gateway, whatever else it holds
    archive_only = await issue_key(admin, datasets=["archive"], districts=["610112"])
    refused = await client.get(
        "/api/reporting/datasets/energy_15min", headers={"X-API-Key": archive_only}
    )
    assert refused.status_code == 403, refused.text
    enterprises = await read_all(client, archive_only, "enterprises")
    assert {e["district_code"] for e in enterprises} == {"610112"}
    assert own_enterprise in {e["id"] for e in enterprises}
    catalogue = await client.get("/api/reporting/datasets", headers={"X-API-Key": archive_only})
    assert catalogue.status_code == 200
    assert {d["name"]: d["grant"] for d in catalogue.json()["datasets"]} == REPORTING_DATASETS
    # keys never write, and never reach the bureau's reports
    for method, path in (("GET", "/api/reporting/reports"), ("POST", "/api/reporting/reports")):
        response = await client.request(method, path, headers={"X-API-Key": city}, json={})
        assert response.status_code == 403, (method, path, response.text)


@pytest.mark.integration
async def test_reporting_checks_the_datasets_in_the_forwarded_identity(
    platform: Platform,
) -> None:
    """Defence in depth: an identity the gateway signed for a key without `telemetry` (as if
    the gateway's own check were skipped) is refused by reporting itself; with it, read."""
    from ecowatt_kernel.identity import DataScope, Identity, Role

    def key(datasets: set[str]) -> dict[str, str]:
        identity = Identity(
            subject="apikey:0123456789abcdef",
            kind="api_key",
            roles=frozenset({Role.PARTNER}),
            scope=DataScope(all=True),
            datasets=frozenset(datasets),
        )
        return {"Authorization": f"Bearer {platform.runtime.signer.sign(identity)}"}

    reporting = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=platform.apps["reporting"]), base_url="http://reporting"
    )
    async with reporting:
        refused = await reporting.get("/datasets/energy_15min", headers=key({"archive"}))
        assert refused.status_code == 403 and "`telemetry`" in refused.json()["detail"]
        allowed = await reporting.get("/datasets/energy_15min", headers=key({"telemetry"}))
        assert allowed.status_code == 200, allowed.text
