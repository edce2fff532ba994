"""Stopping the server while PW checks are queued (found with the simulator in `make run`:
300 devices with 300 distinct PWs connect at once, and a shutdown waited for every queued
scrypt). The frames waiting for their check are given up unanswered; stop returns at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from .conftest import DeviceClient, ServerFactory, device_snapshot, new_mn, registry_with, upload

pytestmark = pytest.mark.integration


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
