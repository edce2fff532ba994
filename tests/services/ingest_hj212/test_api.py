"""The REST API: identity required, data scope enforced on the server, roles for the
unregistered list and for commands, commands audited and their results readable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import ecowatt_hj212 as hj212
import httpx
import pytest
from asgi_lifespan import LifespanManager
from bearer import FreshBearer
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_ingest.api import router
from ecowatt_ingest.server import IngestServer
from ecowatt_kernel.app import Infrastructure, ServiceContext, ServiceSpec, create_app
from ecowatt_kernel.contracts import EnterpriseSnapshot, RegistryChange
from ecowatt_kernel.identity import (
    DataScope,
    Identity,
    Role,
    signer_from_settings,
    verifier_from_settings,
)
from ecowatt_kernel.settings import KernelSettings

from .conftest import (
    NOW,
    DeviceClient,
    ServerFactory,
    TopicReader,
    Topics,
    device_snapshot,
    new_mn,
    registry_with,
    upload,
)

pytestmark = pytest.mark.integration

SETTINGS = KernelSettings(environment="test")
SIGNER = signer_from_settings(SETTINGS)


def token(*roles: Role, scope: DataScope, subject: str = "u-1") -> Mapping[str, str]:
    identity = Identity(subject=subject, roles=frozenset(roles), scope=scope)
    return FreshBearer(SIGNER, identity)


CITY = token(Role.CITY_SUPERVISOR, scope=DataScope(all=True), subject="city")
OFFICER = token(Role.DISTRICT_OFFICER, scope=DataScope(districts=frozenset({"610113"})))
ENTERPRISE = token(Role.ENTERPRISE_USER, scope=DataScope(enterprises=frozenset({"E1"})))
OM = token(Role.OM_OPERATOR, scope=DataScope(all=True), subject="om-7")


@pytest.fixture
async def setup(
    start_server: ServerFactory, kafka, redis
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

    async def on_startup(context: ServiceContext) -> None:
        context.state["ingest"] = server

    spec = ServiceSpec(
        name="ingest-api-test", title="t", description="", routers=[router], on_startup=on_startup
    )
    infrastructure = Infrastructure(
        bus=kafka, redis=redis, database_url="unused", verifier=verifier_from_settings(SETTINGS)
    )
    app = create_app(spec, settings=SETTINGS, infrastructure=infrastructure)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client, server, mns


async def test_identity_and_scope(setup) -> None:
    client, server, mns = setup
    known = await DeviceClient.connect(server.port)
    await known.send(upload(mns["E1"]))
    await known.expect("9014")
    stranger = await DeviceClient.connect(server.port)
    await stranger.send(upload(mns["unknown"]))
    await stranger.expect("9014")
    bad = hj212.encode(upload(mns["E1"]))
    await known.send(bad[:-6] + (b"0000" if bad[-6:-2] != b"0000" else b"1111") + b"\r\n")
    await asyncio.sleep(1.5)  # state flushed to Redis

    assert (await client.get("/devices")).status_code == 401

    city = (await client.get("/devices", headers=CITY)).json()
    assert {d["mn"] for d in city["items"]} >= set(mns.values())
    online = (await client.get("/devices", params={"status": "online"}, headers=CITY)).json()
    assert {d["mn"] for d in online["items"]} == {mns["E1"], mns["unknown"]}
    offline = (await client.get("/devices", params={"status": "offline"}, headers=CITY)).json()
    assert mns["E2"] in {d["mn"] for d in offline["items"]}
    same = (await client.get("/devices", params={"online": "true"}, headers=CITY)).json()
    assert same == online
    same = (await client.get("/devices", params={"online": "false"}, headers=CITY)).json()
    assert same == offline
    page = (await client.get("/devices", params={"limit": 1, "offset": 1}, headers=CITY)).json()
    assert page["total"] == city["total"] and len(page["items"]) == 1

    officer = (await client.get("/devices", headers=OFFICER)).json()
    assert [d["mn"] for d in officer["items"]] == [mns["E1"]], "only the officer's district"
    assert (await client.get(f"/devices/{mns['E2']}", headers=OFFICER)).status_code == 404
    assert (await client.get(f"/devices/{mns['unknown']}", headers=OFFICER)).status_code == 404
    mine = (await client.get("/devices", headers=ENTERPRISE)).json()
    assert [d["mn"] for d in mine["items"]] == [mns["E1"]]

    detail = (await client.get(f"/devices/{mns['E1']}", headers=OFFICER)).json()
    assert detail["online"] is True and detail["registered"] is True
    assert detail["counters"]["frames"] >= 1 and detail["counters"]["rejected"] == 1
    assert detail["recent_rejects"][0]["reason_code"] == "crc_mismatch"

    assert (await client.get("/unregistered", headers=ENTERPRISE)).status_code == 403
    unregistered = (await client.get("/unregistered", headers=OM)).json()
    assert [d["mn"] for d in unregistered["items"]] == [mns["unknown"]]
    await known.close()
    await stranger.close()


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
