"""Finding lifecycle with outbox publication; the API (filters, scope, Excel) on a running app."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Mapping
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from bearer import FreshBearer
from ecowatt_kernel.app import Infrastructure, create_app
from ecowatt_kernel.bus import InProcessBus
from ecowatt_kernel.contracts import encode
from ecowatt_kernel.identity import (
    DataScope,
    Identity,
    Role,
    TokenSigner,
    dev_key_pair,
    verifier_from_settings,
)
from ecowatt_kernel.redis_client import create_redis
from ecowatt_validation import rules as R
from ecowatt_validation.service import SERVICE
from ecowatt_validation.settings import ValidationSettings
from harness import DAY, Harness, change, complete_enterprise, enterprise, local, meter, reading
from openpyxl import load_workbook
from pydantic import SecretStr


async def test_lifecycle_open_updated_resolved_reopened(harness: Harness) -> None:
    await harness.archive([enterprise("E1", credit_code="")])
    for offset in range(2):  # day 1: open, day 2: updated
        await harness.checks.check_archive(DAY + timedelta(days=offset))
    await harness.archive([enterprise("E1", credit_code="91350100M000100Y43")])
    await harness.checks.check_archive(DAY + timedelta(days=2))  # fixed: resolved
    await harness.archive([enterprise("E1", credit_code=" ")])
    await harness.checks.check_archive(DAY + timedelta(days=3))  # broken again: reopened
    await harness.checks.check_archive(DAY + timedelta(days=3))  # same day again: nothing new
    await harness.relay.drain()
    events = [e for e in harness.published_findings() if e.rule_code == R.CREDIT_CODE_EMPTY]
    assert [e.status for e in events] == ["open", "updated", "resolved", "reopened"]
    assert len({e.finding_id for e in events}) == 1
    assert all(
        e.om_company == "运维甲" and e.rule_version == 1 and e.enterprise_id == "E1" for e in events
    )
    [row] = await harness.findings_of(R.CREDIT_CODE_EMPTY)
    assert row.reopen_count == 1 and row.occurrences == 3 and row.last_change == "reopened"
    assert {d for r, _, d in await harness.occurrences() if r == R.CREDIT_CODE_EMPTY} == {
        DAY,
        DAY + timedelta(days=1),
        DAY + timedelta(days=3),
    }


async def test_rerunning_an_older_day_changes_only_that_day(harness: Harness) -> None:
    await harness.archive([enterprise("E1", industry_code="30")])
    await harness.checks.check_archive(DAY + timedelta(days=1))
    await harness.run_day(DAY)  # an older day: recorded, status untouched
    await harness.run_day(DAY)  # idempotent
    [row] = await harness.findings_of(R.INDUSTRY_NOT_CLASS)
    assert row.last_day == DAY + timedelta(days=1) and row.occurrences == 1
    assert {d for r, _, d in await harness.occurrences() if r == R.INDUSTRY_NOT_CLASS} == {
        DAY,
        DAY + timedelta(days=1),
    }


# ------------------------------------------------------------------------------- the API


SIGNER = TokenSigner(dev_key_pair()[0], issuer="ecowatt-auth", audience="ecowatt")


def token(roles: set[Role], scope: DataScope) -> Mapping[str, str]:
    return FreshBearer(SIGNER, Identity(subject="u1", roles=frozenset(roles), scope=scope))


ADMIN = token({Role.ADMIN}, DataScope(all=True))
CITY = token({Role.CITY_SUPERVISOR}, DataScope(all=True))
DISTRICT = token({Role.DISTRICT_OFFICER}, DataScope(districts=frozenset({"610113"})))
ENTERPRISE = token({Role.ENTERPRISE_USER}, DataScope(enterprises=frozenset({"E2"})))


@pytest.fixture
async def api(
    empty_database: str, redis_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, InProcessBus, Any]]:
    settings = ValidationSettings(
        environment="test",
        bus_backend="memory",
        database_url=SecretStr(empty_database),
        redis_url=SecretStr(redis_url),
        sweep_interval_s=3600,
    )
    bus = InProcessBus()
    infrastructure = Infrastructure(
        bus=bus,
        redis=create_redis(redis_url),
        database_url=empty_database,
        verifier=verifier_from_settings(settings),
    )
    app = create_app(SERVICE, settings=settings, infrastructure=infrastructure)
    async with LifespanManager(app, startup_timeout=60):
        await bus.start()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://validation") as client:
            yield client, bus, app.state.context.state["validation"]
        await bus.stop()
    await infrastructure.close()


async def test_api_filters_scope_and_exports(
    api: tuple[httpx.AsyncClient, InProcessBus, Any],
) -> None:
    client, bus, runtime = api
    snapshots = [
        *complete_enterprise("E1"),
        *complete_enterprise("E2", district_code="610104", om_company="运维乙", credit_code=""),
        enterprise("E3", industry_code="30"),
    ]
    await bus.publish([encode(change(s), topic="registry.changes") for s in snapshots])
    for _ in range(200):
        if runtime.view.enterprise("E3") is not None and len(runtime.view.all("point")) == 6:
            break
        await asyncio.sleep(0.02)
    rows = [
        reading("MNE1", local(DAY, 8) + timedelta(minutes=i), meter(1, 10.0, 100.0 - i))
        for i in range(3)
    ]
    await bus.publish([encode(r) for r in rows])
    for _ in range(200):
        if (
            runtime.binder.cache.get("E1-PT") is not None
            and not runtime.binder.cache["E1-PT"].dirty
        ):
            break
        await asyncio.sleep(0.02)

    assert (await client.get("/findings")).status_code == 401
    forbidden = await client.post("/runs", json={"day": str(DAY)}, headers=DISTRICT)
    assert forbidden.status_code == 403
    run = await client.post("/runs", json={"day": str(DAY)}, headers=CITY)
    assert run.status_code == 200, run.text

    everything = (await client.get("/findings", params={"page_size": 500}, headers=ADMIN)).json()
    pairs = {(f["rule_code"], f["subject_id"]) for f in everything["items"]}
    assert {
        (R.NEGATIVE_ENERGY, "E1-PT"),
        (R.CREDIT_CODE_EMPTY, "E2"),
        (R.INDUSTRY_NOT_CLASS, "E3"),
    } <= pairs
    district = (
        await client.get("/findings", params={"district": "610100"}, headers=DISTRICT)
    ).json()
    assert district["items"] and {f["district_code"] for f in district["items"]} == {"610113"}
    mine = (await client.get("/findings", headers=ENTERPRISE)).json()
    assert mine["items"] and {f["enterprise_id"] for f in mine["items"]} == {"E2"}
    by_rule = (
        await client.get(
            "/findings", params={"rule": R.CREDIT_CODE_EMPTY, "om_company": "运维乙"}, headers=ADMIN
        )
    ).json()
    assert by_rule["total"] == 1
    assert (
        await client.get(
            "/findings", params={"industry": "30", "status": "all", "page_size": 1}, headers=ADMIN
        )
    ).json()["pages"] >= 1
    assert (await client.get("/findings", params={"min_age_days": 3}, headers=ADMIN)).json()[
        "total"
    ] == 0
    assert (await client.get("/findings", params={"zone": "none"}, headers=ADMIN)).json()[
        "total"
    ] == 0
    one = (await client.get(f"/findings/{mine['items'][0]['id']}", headers=ENTERPRISE)).json()
    assert one["days"] and one["enterprise_id"] == "E2"
    other = [f for f in everything["items"] if f["enterprise_id"] == "E1"][0]  # noqa: RUF015
    assert (await client.get(f"/findings/{other['id']}", headers=ENTERPRISE)).status_code == 404
    # links back to the raw frames: the point's device on the finding's last (local) day;
    # an archive rule judges the registry, not frames
    (negative,) = [f for f in everything["items"] if f["rule_code"] == R.NEGATIVE_ENERGY]
    detail = (await client.get(f"/findings/{negative['id']}", headers=ADMIN)).json()
    (link,) = detail["frames"]
    assert (link["mn"], link["point_ids"]) == ("MNE1", ["E1-PT"])
    day = date.fromisoformat(detail["last_day"])
    assert datetime.fromisoformat(link["from"]) == local(day, 0)
    assert datetime.fromisoformat(link["to"]) == local(day, 0) + timedelta(days=1, microseconds=-1)
    assert link["url"].startswith("/api/ingest-hj212/archive/frames?mn=MNE1&data_from=")
    assert (await client.get(f"/findings/{one['id']}", headers=ENTERPRISE)).json()["frames"] == []

    issues = (
        await client.get(
            "/issues/daily", params={"day": str(DAY), "by": "om_company"}, headers=ADMIN
        )
    ).json()
    assert {r["group"] for r in issues["rows"]} >= {"运维甲", "运维乙"}
    card = (await client.get("/scorecards/E1", params={"day_to": str(DAY)}, headers=ADMIN)).json()
    assert (
        0 < card["completeness"] < 0.01
        and card["open_findings"] >= 1
        and card["archive_completeness"] == 1.0
    )
    assert (await client.get("/scorecards/E1", headers=ENTERPRISE)).status_code == 404
    stats = (
        await client.get(
            "/stats/daily",
            params={"day_from": str(DAY), "day_to": str(DAY), "by": "district"},
            headers=DISTRICT,
        )
    ).json()
    assert [r["group"] for r in stats["rows"]] == ["610113"]

    rules = (await client.get("/rules", headers=DISTRICT)).json()
    assert len(rules) == len(R.RULES) and all(r["version"] == 1 for r in rules)
    denied = await client.put(
        f"/rules/{R.CONSTANT_POWER}", json={"params": {"window_h": 6}}, headers=CITY
    )
    assert denied.status_code == 403
    changed = await client.put(
        f"/rules/{R.CONSTANT_POWER}", json={"params": {"window_h": 6}}, headers=ADMIN
    )
    assert changed.json()["version"] == 2 and changed.json()["params"]["window_h"] == 6.0
    assert (
        await client.put(f"/rules/{R.CONSTANT_POWER}", json={"params": {"x": 1}}, headers=ADMIN)
    ).status_code == 422
    history = (await client.get(f"/rules/{R.CONSTANT_POWER}", headers=ADMIN)).json()
    assert [v["version"] for v in history["versions"]] == [1, 2]

    for path, params in (
        ("/findings", {}),
        ("/issues/daily", {"day": str(DAY)}),
        ("/scorecards", {"day_to": str(DAY)}),
        ("/stats/daily", {"day_to": str(DAY)}),
        ("/unbound", {}),
        ("/rules", {}),
    ):
        response = await client.get(path, params={**params, "format": "xlsx"}, headers=DISTRICT)
        assert response.status_code == 200, path
        sheet = load_workbook(io.BytesIO(response.content)).active
        assert sheet is not None and sheet.max_row >= 1
    export = await client.get("/findings", params={"format": "xlsx"}, headers=DISTRICT)
    sheet = load_workbook(io.BytesIO(export.content)).active
    assert sheet is not None
    header = [c.value for c in sheet[1]]
    assert header[:2] == ["规则编码", "规则名称"]
    assert all(row[5] == "610113" for row in sheet.iter_rows(min_row=2, values_only=True))


async def test_consumer_groups_follow_the_configured_prefix(
    empty_database: str, redis_url: str
) -> None:
    """Two validations on one broker (a deployment and a benchmark) must not share a group."""
    settings = ValidationSettings(
        environment="test",
        bus_backend="memory",
        database_url=SecretStr(empty_database),
        redis_url=SecretStr(redis_url),
        sweep_interval_s=3600,
        validation_consumer_prefix="validation-bench-7",
    )
    bus = InProcessBus()
    infrastructure = Infrastructure(
        bus=bus,
        redis=create_redis(redis_url),
        database_url=empty_database,
        verifier=verifier_from_settings(settings),
    )
    app = create_app(SERVICE, settings=settings, infrastructure=infrastructure)
    async with LifespanManager(app, startup_timeout=60):
        runtime = app.state.context.state["validation"]
        groups = {s.group for s in app.state.context.subscriptions}
        assert "validation-bench-7.bind" in groups
        assert runtime.view.subscription.group.startswith("validation-bench-7.registry-view.")
    await infrastructure.close()
