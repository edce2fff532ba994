"""PW checks when many devices connect at once (found pairing ingest with the simulator).

* Devices sharing one stored hash (a fleet with one default PW) connecting together cost one
  scrypt, not one each (the bench's 200 devices queued 200).
* Stopping the server while checks are queued (`make run`: 339 devices with distinct PWs
  connect at once) does not wait for every queued scrypt: the frames waiting for their
  check are given up unanswered, and stop returns at once."""

from __future__ import annotations

import asyncio
import time

import pytest
from ecowatt_ingest import devices as ingest_devices

from .conftest import DeviceClient, ServerFactory, device_snapshot, new_mn, registry_with, upload

pytestmark = pytest.mark.integration


async def test_devices_sharing_a_hash_connecting_together_cost_one_scrypt(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = ingest_devices.verify_password

    def counting(password: str, stored: str) -> bool:
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(ingest_devices, "verify_password", counting)
    mns = [new_mn() for _ in range(30)]
    server = await start_server(registry_with(*(device_snapshot(mn) for mn in mns)))
    clients = [await DeviceClient.connect(server.port or 0) for _ in mns]
    await asyncio.gather(*(c.send(upload(mn)) for c, mn in zip(clients, mns, strict=True)))
    for client in clients:
        await client.expect("9014")
    assert calls == ["123456"], f"{len(calls)} scrypt checks for one shared hash"
    for client in clients:
        await client.close()


async def test_stop_does_not_wait_for_queued_password_checks(start_server: ServerFactory) -> None:
    devices = [(new_mn(), f"{100000 + i}") for i in range(80)]
    registry = registry_with(*(device_snapshot(mn, pw=pw) for mn, pw in devices))
    server = await start_server(registry)
    clients = [await DeviceClient.connect(server.port or 0) for _ in devices]
    for client, (mn, pw) in zip(clients, devices, strict=True):
        await client.send(upload(mn, pw=pw))
    await asyncio.sleep(0.2)  # every frame read; about 80 scrypt checks of ~35 ms queued
    began = time.monotonic()
    await server.stop()
    took = time.monotonic() - began
    assert took < 0.5, f"stop took {took:.1f} s"
    answered = server.stats["acks"]
    assert answered < len(devices), "not every PW was checked before the stop"
    for client in clients:
        await client.close()
