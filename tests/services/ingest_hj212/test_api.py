"""The REST API: identity required, data scope enforced on the server, roles for the
unregistered list and for commands, commands audited and their results readable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import ecowatt_hj212 as hj212
import httpx
import pytest
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_ingest.server import IngestServer
from ecowatt_kernel.contracts import EnterpriseSnapshot, RegistryChange
from ecowatt_kernel.identity import DataScope, Role

from .conftest import (
    NOW,
    ApiFactory,
    DeviceClient,
    ServerFactory,
    TopicReader,
    Topics,
    device_snapshot,
    new_mn,
    registry_with,
    token,
    upload,
)

pytestmark = pytest.mark.integration

CITY = token(Role.CITY_SUPERVISOR, scope=DataScope(all=True), subject="city")
OFFICER = token(Role.DISTRICT_OFFICER, scope=DataScope(districts=frozenset({"610113"})))
ENTERPRISE = token(Role.ENTERPRISE_USER, scope=DataScope(enterprises=frozenset({"E1"})))
OM = token(Role.OM_OPERATOR, scope=DataScope(all=True), subject="om-7")


@pytest.fixture
async def setup(
    start_server: ServerFactory, api: ApiFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, IngestServer, dict[str, str]]]:
    mns = {"E1": new_mn(), "E2": new_mn(), "unknown": new_mn()}
    view = registry_with(
        device_snapshot(mns["E1"]),
        device_snapshot(mns["E2"]).model_copy(update={"enterprise_id": "E2"}),
    )
    for number, (enterprise, district) in enumerate((("E1", "610113"), ("E2", "610104"))):
        snapshot = EnterpriseSnapshot(
            id=enterprise, updated_at=NOW, name=enterprise, district_code=district
        )
        view.apply(
            RegistryChange(
                entity="enterprise",
                entity_id=enterprise,
                operation="upsert",
                revision=number + 1,
                changed_at=NOW,
                snapshot=snapshot.model_dump(mode="json"),
            )
        )
    server = await start_server(view, consume_commands=True)
    yield await api(server), server, mns


async def test_identity_and_scope(setup) -> None:
    client, server, mns = setup
    known = await DeviceClient.connect(server.port)
    await known.send(upload(mns["E1"]))
    await known.expect("9014")
    stranger = await DeviceClient.connect(server.port)
    await stranger.send(upload(mns["unknown"]))
    refused = await stranger.expect("9011")
    assert refused.params["QnRtn"] == "4"
    bad = hj212.encode(upload(mns["E1"]))
    await known.send(bad[:-6] + (b"0000" if bad[-6:-2] != b"0000" else b"1111") + b"\r\n")
    await asyncio.sleep(1.5)  # state flushed to Redis

    assert (await client.get("/devices")).status_code == 401

    city = (await client.get("/devices", headers=CITY)).json()
    assert {d["mn"] for d in city["items"]} == {mns["E1"], mns["E2"]}, "no refused MN listed"
    online = (await client.get("/devices", params={"status": "online"}, headers=CITY)).json()
    assert {d["mn"] for d in online["items"]} == {mns["E1"]}
    offline = (await client.get("/devices", params={"status": "offline"}, headers=CITY)).json()
    assert {d["mn"] for d in offline["items"]} == {mns["E2"]}
    same = (await client.get("/devices", params={"online": "true"}, headers=CITY)).json()
    assert same == online
    same = (await client.get("/devices", params={"online": "false"}, headers=CITY)).json()
    assert same == offline

    officer = (await client.get("/devices", headers=OFFICER)).json()
    assert [d["mn"] for d in officer["items"]] == [mns["E1"]], "only the officer's district"
    assert (await client.get(f"/devices/{mns['E2']}", headers=OFFICER)).status_code == 404
    assert (await client.get(f"/devices/{mns['unknown']}", headers=OFFICER)).status_code == 404
    mine = (await client.get("/devices", headers=ENTERPRISE)).json()
    assert [d["mn"] for d in mine["items"]] == [mns["E1"]]

    detail = (await client.get(f"/devices/{mns['E1']}", headers=OFFICER)).json()
    assert detail["online"] is True and detail["registered"] is True
    assert detail["identity"] == "ok" and detail["unverified"] is None
    assert detail["counters"]["frames"] >= 1 and detail["counters"]["rejected"] == 1
    assert detail["recent_rejects"][0]["reason_code"] == "crc_mismatch"
    refused_detail = (await client.get(f"/devices/{mns['unknown']}", headers=CITY)).json()
    assert refused_detail["online"] is False and refused_detail["counters"] == {}
    assert refused_detail["unverified"]["reason"] == "unknown_mn"

    assert (await client.get("/unregistered", headers=ENTERPRISE)).status_code == 403
    unregistered = (await client.get("/unregistered", headers=OM)).json()
    [item] = unregistered["items"]
    assert item["mn"] == mns["unknown"] and item["reason"] == "unknown_mn"
    assert item["frames"] == 1 and item["registered"] is False
    assert item["last_peer"].startswith("127.0.0.1:") and item["last_cn"] == "2011"
    await known.close()
    await stranger.close()


async def test_list_endpoints_paginate_on_the_server(
    start_server: ServerFactory, api: ApiFactory
) -> None:
    """`/devices` and `/unregistered` answer the kernel's page shape; the pages partition
    the list, most recently seen first for the unregistered, and the page size is capped."""
    registered = sorted(new_mn() for _ in range(5))
    server = await start_server(registry_with(*(device_snapshot(mn) for mn in registered)))
    client = await api(server)
    strangers = [new_mn() for _ in range(7)]
    for mn in strangers:  # one after the other: each is seen later than the previous
        device = await DeviceClient.connect(server.port or 0)
        await device.send(upload(mn))
        await device.expect("9011")
        await device.close()
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # flushed to Redis

    pages = []
    for number in (1, 2, 3):
        page = (
            await client.get("/unregistered", params={"page": number, "page_size": 3}, headers=OM)
        ).json()
        assert (page["total"], page["page"], page["page_size"], page["pages"]) == (7, number, 3, 3)
        pages.append([item["mn"] for item in page["items"]])
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [mn for p in pages for mn in p] == strangers[::-1], "most recently seen first"
    beyond = await client.get("/unregistered", params={"page": 4, "page_size": 3}, headers=OM)
    assert beyond.status_code == 200 and beyond.json()["items"] == []
    too_big = await client.get("/unregistered", params={"page_size": 501}, headers=OM)
    assert too_big.status_code == 422

    seen = []
    for number in (1, 2, 3):
        page = (
            await client.get("/devices", params={"page": number, "page_size": 2}, headers=CITY)
        ).json()
        assert page["total"] == 5 and page["pages"] == 3
        seen += [item["mn"] for item in page["items"]]
    assert seen == registered


async def test_commands_need_a_role_are_audited_and_report_their_result(
    setup, kafka, topics: Topics
) -> None:
    client, server, mns = setup
    audit = await TopicReader(kafka, topics.audit).start()
    device = await DeviceClient.connect(server.port)
    await device.send(upload(mns["E1"]))
    await device.expect("9014")
    await asyncio.sleep(0.5)
    body = {"cn": "1062", "params": {"RtdInterval": "120"}}
    denied = await client.post(f"/devices/{mns['E1']}/commands", json=body, headers=ENTERPRISE)
    assert denied.status_code == 403
    unsupported = await client.post(
        f"/devices/{mns['E1']}/commands", json={"cn": "3011"}, headers=OM
    )
    assert unsupported.status_code == 422
    sent = await client.post(f"/devices/{mns['E1']}/commands", json=body, headers=OM)
    assert sent.status_code == 202, sent.text
    command_id = sent.json()["command_id"]
    request = await device.expect("1062", limit_s=30)
    assert request.params["RtdInterval"] == "120"
    await device.send(hj212.encode(hj212_commands.request_answer(request, 1)))
    await device.send(hj212.encode(hj212_commands.execution_answer(request, 1)))
    for _ in range(100):
        state = (await client.get(f"/commands/{command_id}", headers=OFFICER)).json()
        if state["status"] == "executed":
            break
        await asyncio.sleep(0.1)
    assert state["status"] == "executed" and state["requested_by"] == "om-7"
    assert state["result"]["exe_rtn"] == 1
    hidden = await client.get(
        f"/commands/{command_id}",
        headers=token(Role.DISTRICT_OFFICER, scope=DataScope(districts=frozenset({"610104"}))),
    )
    assert hidden.status_code == 404
    events = await audit.wait_for(lambda e: len(e) >= 1, "the audit event")
    assert events[0].actor == "om-7" and events[0].action == "device.command"
    assert events[0].details["command_id"] == command_id
    await device.close()
    await audit.stop()
