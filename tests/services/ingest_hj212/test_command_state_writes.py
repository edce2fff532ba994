"""A burst of command states (found by the ingest outage benchmark: after the broker came
back, 200 devices' 1012 commands each opened a Redis connection at once and Redis refused
some with "Too many connections"): at most `STATE_WRITERS` writes run at once, in order per
command, and every state arrives."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ecowatt_ingest import commands as ingest_commands

from .conftest import ServerFactory, registry_with

pytestmark = pytest.mark.integration


async def test_command_states_are_written_through_a_few_connections(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server(registry_with())
    store = server.store
    real = store.command_update
    running, peak, written = 0, 0, []

    async def update(command_id: str, fields: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.01)
            await real(command_id, fields)
            written.append((command_id, fields["status"]))
        finally:
            running -= 1

    monkeypatch.setattr(store, "command_update", update)
    manager = server.commands
    for i in range(200):
        planned = ingest_commands.PlannedCommand(
            command_id=f"burst-{i}",
            cn="1012",
            params={},
            requested_by="test",
            overtime_s=10,
            recount=3,
        )
        manager._publish(f"MN{i:022d}", planned, "sent")
        manager._publish(f"MN{i:022d}", planned, "timeout")
    await manager.flush()
    await asyncio.sleep(0.5)
    assert peak <= ingest_commands.STATE_WRITERS
    assert len(written) == 400
    for i in range(200):  # in order per command
        assert [s for c, s in written if c == f"burst-{i}"] == ["sent", "timeout"]
