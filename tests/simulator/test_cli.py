"""`python -m ecowatt_simulator` in its own process, against the test server."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from ecowatt_kernel.bus import KafkaBus, KafkaConnection
from ecowatt_kernel.synthetic import device_password
from ecowatt_simulator import Fleet, SentLog, publish_fleet


async def _cli(*args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ecowatt_simulator",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-2000:]
    summary: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return summary


async def test_cli_shard_writes_sent_log_and_ground_truth(platform: Any, tmp_path: Path) -> None:
    log_file, truth_file = tmp_path / "sent.jsonl", tmp_path / "truth.json"
    summary = await _cli(
        "--target", f"127.0.0.1:{platform.port}",
        "--synthetic-devices", "4", "--circuits", "2-5", "--city-seed", "61",
        "--fast", "--start", "2025-12-01T00:00:00+08:00", "--duration", "2h",
        "--shard", "1/2", "--fault", "garbage=0.5", "--fault", "lowercase_crc=1",
        "--log", str(log_file), "--ground-truth", str(truth_file),
    )  # fmt: skip
    shard = sorted(Fleet.synthetic(4, circuits=(2, 5), seed=61).devices)[1::2]
    lines = SentLog.read(log_file)
    devices = [line for line in lines if line["type"] == "device"]
    assert [d["mn"] for d in devices] == shard
    assert lines[-1]["type"] == "summary" and lines[-1]["frames"] == summary["frames"]
    assert summary["all_answered"] and summary["unacked"] == 0
    received = {(f.mn, f.qn) for f in platform.decoded()}
    for device in devices:
        assert device["qns"] and device["unacked"] == []
        assert {(device["mn"], qn) for qn in device["qns"]} <= received
        realtime = platform.decoded(device["mn"], "2011")
        assert device["by_cn"]["2011"] == len({f.qn for f in realtime}), "frames, parts counted"
        assert len(platform.records(device["mn"], "2011")) == 121
    assert {f.mn for f in platform.decoded()} == set(shard)
    assert all(f.pw == device_password(61, f.mn) for f in platform.decoded())
    truth = json.loads(truth_file.read_text())
    assert set(truth["assignments"]) == set(shard)
    assert all("lowercase_crc" in kinds for kinds in truth["assignments"].values())
    garbage = {mn for mn, kinds in truth["assignments"].items() if "garbage" in kinds}
    conn_mn = {c.id: c.mn for c in platform.conns}
    assert {conn_mn[conn] for conn, _ in platform.rejected} == garbage


async def test_cli_idle_mode_holds_connections(platform: Any) -> None:
    summary = await _cli(
        "--target", f"127.0.0.1:{platform.port}",
        "--synthetic-devices", "6", "--circuits", "1", "--city-seed", "62",
        "--idle", "--duration", "1.5", "--connect-rate", "200",
    )  # fmt: skip
    assert summary["frames"] == 6 and summary["connects"] == 6
    assert len(platform.conns) == 6
    held = [c.closed_at - c.opened_at for c in platform.conns if c.closed_at is not None]
    assert len(held) == 6 and min(held) >= 1.0, "held until the end"
    assert {f.cn for f in platform.decoded()} == {"2011"}


@pytest.mark.integration
async def test_cli_reads_the_fleet_from_kafka(platform: Any, kafka_bootstrap: str) -> None:
    topic = f"test.simulator.registry.{uuid.uuid4().hex[:8]}"
    fleet = Fleet.synthetic(3, circuits=3, seed=63, city_seed=64)
    bus = KafkaBus(KafkaConnection(bootstrap_servers=kafka_bootstrap))
    await bus.start()
    try:
        await publish_fleet(bus, fleet, topic=topic)
    finally:
        await bus.stop()
    summary = await _cli(
        "--target", f"127.0.0.1:{platform.port}",
        "--registry-from-kafka", kafka_bootstrap, "--registry-topic", topic,
        "--city-seed", "64", "--fast", "--duration", "30m",
    )  # fmt: skip
    assert summary["devices"] == 3 and summary["all_answered"]
    frames = platform.decoded()
    assert {f.mn for f in frames} == set(fleet.devices)
    assert all(f.pw == device_password(64, f.mn) for f in frames)
    for mn, device in fleet.devices.items():
        circuits = {int(code[4:]) for f in platform.decoded(mn, "2011") for code in f.codes}
        assert circuits == {p.circuit for p in device.points}
