"""Standalone loses nothing: the real entry point (`python -m ecowatt_standalone`, its own
data folder and ports) under load from the device simulator, through a full disk and a
`kill -9`.

One run of a small synthetic city (the simulator plays its registered devices, fast: each
sends its next upload as soon as one is answered):

1. **Disk full.** While devices send, the process's file-size limit is lowered to the size
   its bus journal has (`prlimit RLIMIT_FSIZE`: the kernel refuses every further byte with
   EFBIG, as a full disk refuses with ENOSPC — same failure at the same write). Publishing
   fails, so no device is answered and readiness reports the bus; the limit is lifted
   ("space returns") and the devices' re-sends are answered.
2. **kill -9** mid-stream, then the same command again on the same folder: the devices
   reconnect and re-send what was not answered.
3. When every upload is answered, counted against the simulator's sent log: every frame
   that got a 9014 is in the archive, and validation bound it **exactly once** — for every
   point of every device and day, the set of sample slots validation marked equals the set
   of DataTimes the archive holds for it, and its sample count equals that set's size (a
   reading bound twice would count twice; one lost would leave a hole).
4. A replay of the whole window through the API changes none of that.

A read-only disk is covered where it can be made without root tricks: the journal's write
boundary refusing with EROFS (tests/libs/kernel/bus/test_disk.py); a sandbox root ignores
`chmod`, and mounting a read-only file system needs privileges CI does not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from bearer import FreshBearer
from ecowatt_kernel.bus.segment import read_segment
from ecowatt_kernel.bus.types import Record
from ecowatt_kernel.contracts import RegistryChange, decode
from ecowatt_kernel.identity import DataScope, Identity, Role, signer_from_settings
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.settings import KernelSettings
from ecowatt_simulator import DeviceSettings, Fleet, SimClock, Simulator
from ecowatt_standalone.embedded import EmbeddedPostgres, EmbeddedRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 515
ENTERPRISES = 6
START = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # 08:00 local: production runs
HOURS = 3
TZ = ZoneInfo("Asia/Shanghai")
HEADERS = FreshBearer(  # signed at each use: the suite may reach this test hours after import
    signer_from_settings(KernelSettings(environment="development")),
    Identity(subject="crash-test", roles=frozenset({Role.ADMIN}), scope=DataScope(all=True)),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Platform:
    """`python -m ecowatt_standalone` on a data folder and private ports; output to a file
    (through a pipe: a file-size limit on the process must not stop its log)."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.ports = {k: free_port() for k in ("http", "ops", "pg", "redis", "hj212")}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data.parent / "standalone.log"
        self.url = f"http://127.0.0.1:{self.ports['http']}"

    def start(self) -> None:
        env = {
            **os.environ,
            "ECOWATT_DATA_DIR": str(self.data),
            "ECOWATT_HTTP_PORT": str(self.ports["http"]),
            "ECOWATT_OPERATIONS_PORT": str(self.ports["ops"]),
            "ECOWATT_STANDALONE_PG_PORT": str(self.ports["pg"]),
            "ECOWATT_STANDALONE_REDIS_PORT": str(self.ports["redis"]),
            "ECOWATT_HJ212_PORT": str(self.ports["hj212"]),
            "ECOWATT_HJ212_HOST": "127.0.0.1",
            "ECOWATT_ENVIRONMENT": "development",
            "ECOWATT_SIMULATOR_ENABLED": "false",  # the test's simulator is the fleet
            "ECOWATT_REGISTRY_SEED": str(SEED),
            "ECOWATT_REGISTRY_SEED_ENTERPRISES": str(ENTERPRISES),
            "ECOWATT_REGISTRY_SEED_DEFECT_SHARE": "0",
            # fast simulated devices: far above a logger's rate, and clocks in the past
            "ECOWATT_MAX_FRAMES_PER_S": "100000",
            "ECOWATT_FRAME_BURST": "100000",
            "ECOWATT_MAX_CLOCK_DRIFT_S": "1000000000",
            "ECOWATT_BACKFILL_ENABLED": "false",
            "ECOWATT_PUBLISH_RETRY_MAX_S": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ecowatt_standalone"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # (a signal to the test's process group is not for it)
        )
        pipe = self.process.stdout
        assert pipe is not None

        def drain() -> None:
            with self.log.open("ab") as out:
                for line in pipe:
                    out.write(line)
                    out.flush()

        threading.Thread(target=drain, daemon=True).start()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    async def healthy(self, client: httpx.AsyncClient, limit_s: float = 120.0) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"standalone exited:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{self.url}/healthz", timeout=2)).status_code == 200:
                    return
            await asyncio.sleep(0.25)
        raise AssertionError(f"standalone not healthy within {limit_s:.0f} s:\n{self.tail()}")

    async def readiness(self, client: httpx.AsyncClient) -> httpx.Response:
        """`/readyz`: on the operations port where the gateway keeps it off the public one,
        else on the HTTP port."""
        with contextlib.suppress(httpx.ConnectError):
            return await client.get(f"http://127.0.0.1:{self.ports['ops']}/readyz")
        return await client.get(f"{self.url}/readyz")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)

    def servers_down(self) -> None:
        """The embedded servers outlive a killed process: stop them."""
        EmbeddedRedis(self.data / "redis", port=self.ports["redis"]).down()
        EmbeddedPostgres(self.data / "postgres", port=self.ports["pg"]).down()

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://ecowatt@127.0.0.1:{self.ports['pg']}/ecowatt"

    def registry_records(self) -> list[Record]:
        """registry.changes as the bus journal holds it (read while the process runs)."""
        for _ in range(20):
            segments = sorted((self.data / "bus").glob("segment-*.log"))
            try:
                entries = read_segment(segments[-1]).entries
            except (FileNotFoundError, IndexError):  # (a checkpoint switched segments)
                time.sleep(0.1)
                continue
            return [e for e in entries if isinstance(e, Record) and e.topic == "registry.changes"]
        raise AssertionError("no bus journal to read")


async def seeded_fleet(platform: Platform, client: httpx.AsyncClient) -> tuple[Fleet, Any]:
    """The registry's synthetic city, once seeded and on the bus, as the simulator's fleet."""
    deadline = time.monotonic() + 180
    city = None
    while city is None:
        response = await client.get(
            f"{platform.url}/api/registry/admin/synthetic-city", headers=HEADERS
        )
        if response.status_code == 200:
            city = response.json()
        elif time.monotonic() > deadline:
            raise AssertionError(f"no synthetic city: {response.text}\n{platform.tail()}")
        else:
            await asyncio.sleep(0.5)
    devices = city["counts"]["device"]
    while True:
        view = RegistryView(topic="registry.changes")
        changes = [decode(r).data for r in platform.registry_records()]
        view.apply_all(c for c in changes if isinstance(c, RegistryChange))
        if len(view.all("device")) >= devices:
            return Fleet.from_view(view, city_seed=SEED), view
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(view.all('device'))} of {devices} devices on the bus")
        await asyncio.sleep(0.5)


async def wait_ready(platform: Platform, client: httpx.AsyncClient) -> None:
    for _ in range(100):
        if (await platform.readiness(client)).status_code == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not ready again: {(await platform.readiness(client)).text}")


def acked(sim: Simulator) -> int:
    return sum(d.acked_count for d in sim.log)


async def wait_acked(sim: Simulator, count: int, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while acked(sim) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {acked(sim)} of {count} uploads answered")
        await asyncio.sleep(0.1)


def slot_bits(data: bytes) -> set[int]:
    return {i * 8 + b for i, byte in enumerate(data) for b in range(8) if byte >> b & 1}


async def binding_state(engine: Any) -> dict[tuple[str, Any], tuple[int, set[int]]]:
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT point_id, day, samples, slots FROM validation.point_daily")
            )
        ).all()
    return {(r.point_id, r.day): (r.samples, slot_bits(r.slots)) for r in rows}


async def archive_index(engine: Any) -> tuple[dict[tuple[str, str], int], dict[str, set[str]]]:
    """(MN, QN) → first arrivals stored; MN → DataTimes of its accepted 2011 frames."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT mn, qn, cn, data_time, verdict FROM ingest.frames"
                    " WHERE mn IS NOT NULL AND verdict <> 'rejected'"
                )
            )
        ).all()
    first: dict[tuple[str, str], int] = defaultdict(int)
    times: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.verdict == "accepted" and row.qn is not None:
            first[(row.mn, row.qn)] += 1
        if row.verdict == "accepted" and row.cn == "2011" and row.data_time:
            times[row.mn].add(row.data_time)
    return first, times


async def _differences(
    engine: Any, view: RegistryView, wrong: dict[tuple[str, Any], tuple[Any, set[int]]]
) -> list[dict[str, Any]]:
    """For a failure: per point-day the slots bound but not archived and archived but not
    bound, with what the archive holds of the device's frames at those minutes."""
    out = []
    for (point_id, day), (held, expected) in list(wrong.items())[:4]:
        held = held or set()
        point = view.point(point_id)
        mn = point.device_mn if point is not None else None
        unbound = sorted(expected - held)
        interval = point.expected_interval_s if point is not None else 60
        stamps = [
            f"{day:%Y%m%d}{s * interval // 3600:02d}{s * interval % 3600 // 60:02d}"
            f"{s * interval % 60:02d}"
            for s in unbound[:3]
        ]
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    text(
                        "SELECT received_at, cn, qn, data_time, verdict, reason_code,"
                        " raw_codec, raw FROM ingest.frames"
                        " WHERE mn = :mn AND data_time = ANY(:stamps) ORDER BY received_at"
                    ),
                    {"mn": mn, "stamps": stamps},
                )
            ).all()
        frames = []
        for row in rows:
            raw = zlib.decompress(row.raw) if row.raw_codec == "zlib" else bytes(row.raw)
            split = re.search(rb"PNUM=(\d+);PNO=(\d+)", raw)
            frames.append(
                (
                    row.received_at.isoformat(),
                    row.cn,
                    row.qn,
                    row.data_time,
                    row.verdict,
                    row.reason_code,
                    f"part {split[2].decode()}/{split[1].decode()}" if split else "whole",
                )
            )
        out.append(
            {
                "point": point_id,
                "day": str(day),
                "mn": mn,
                "archived_not_bound": unbound[:10],
                "bound_not_archived": sorted(held - expected)[:10],
                "archive_at_those_minutes": frames,
            }
        )
    return out


def expected_slots(
    view: RegistryView, times: dict[str, set[str]]
) -> dict[tuple[str, Any], set[int]]:
    """What validation must hold: per point and local day, the slot of each DataTime."""
    expected: dict[tuple[str, Any], set[int]] = defaultdict(set)
    for mn, stamps in times.items():
        for point in view.points_of_device(mn):
            if point.status != "active":
                continue
            for stamp in stamps:
                local = datetime.strptime(stamp, "%Y%m%d%H%M%S")
                seconds = local.hour * 3600 + local.minute * 60 + local.second
                expected[(point.id, local.date())].add(seconds // point.expected_interval_s)
    return expected


@pytest.fixture
def folder() -> Any:
    """A folder of its own, not under pytest's: pytest resets /tmp/pytest-of-<user> to 0700
    whenever a session starts, and PostgreSQL (run as its own user under root) must reach
    its data folder — other sessions on the machine would lock it out mid-test."""
    path = Path(tempfile.mkdtemp(prefix="ecowatt-crash-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(900)
async def test_nothing_acknowledged_is_lost_through_a_full_disk_and_a_kill_9(
    folder: Path,
) -> None:
    platform = Platform(folder / "data")
    engine = None
    sim: Simulator | None = None
    try:
        platform.start()
        async with httpx.AsyncClient(timeout=10) as client:
            await platform.healthy(client)
            fleet, view = await seeded_fleet(platform, client)
            engine = create_async_engine(platform.database_url)
            sim = Simulator(
                fleet,
                port=platform.ports["hj212"],
                clock=SimClock.fast(START),
                settings=DeviceSettings(
                    sample_s=60,
                    window=2,
                    hour_data=False,
                    day_data=False,
                    ack_timeout_s=3.0,
                    backoff_base_s=0.5,
                    backoff_max_s=3.0,
                ),
            )
            running = asyncio.create_task(sim.run(timedelta(hours=HOURS), drain_timeout=240))
            await wait_acked(sim, 300)

            # 1. The disk refuses every further byte of the journal.
            assert platform.process is not None
            pid = platform.process.pid
            journal = sorted((platform.data / "bus").glob("segment-*.log"))[-1]
            soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (journal.stat().st_size, hard))
            await asyncio.sleep(2.0)  # what was durable before is answered meanwhile
            before = acked(sim)
            await asyncio.sleep(4.0)
            assert acked(sim) == before, "no device answered while nothing can be written"
            ready = await platform.readiness(client)
            assert ready.status_code == 503 and ready.json()["checks"]["bus"] is False
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))  # space returns
            await wait_acked(sim, before + 200)
            await wait_ready(platform, client)

            # 2. kill -9 mid-stream, then the same command again.
            platform.kill()
            killed_at = acked(sim)
            platform.start()
            await platform.healthy(client)
            assert await running, f"unanswered after the restart: {sim.log.unacked()}"
            assert acked(sim) > killed_at
            assert sim.log.summary()["resends"] > 0, "the devices had to send again"

            # 3. Every answered frame archived, and bound exactly once.
            answered = {(d.mn, qn) for d in sim.log for qn in d.acked}
            deadline = time.monotonic() + 180
            while True:
                first, times = await archive_index(engine)
                missing = answered - set(first)
                expected = expected_slots(view, times)
                state = await binding_state(engine)
                held = {k: v[1] for k, v in state.items()}
                if not missing and all(held.get(k) == v for k, v in expected.items()):
                    break
                if time.monotonic() > deadline:
                    wrong = {k: (held.get(k), v) for k, v in expected.items() if held.get(k) != v}
                    raise AssertionError(
                        f"{len(missing)} answered frames not archived (e.g. {sorted(missing)[:3]});"
                        f" {len(wrong)} point-days bound differently:"
                        f" {await _differences(engine, view, wrong)}"
                    )
                await asyncio.sleep(1.0)
            assert expected and sum(len(v) for v in expected.values()) > 1000
            for key, (samples, slots) in state.items():
                assert samples == len(slots), f"{key}: {samples} samples for {len(slots)} slots"
                assert slots == expected.get(key, set()), f"{key}: slots of no archived frame"
            twice = {k: n for k, n in first.items() if n > 1}
            # (a frame durable but unanswered at the kill comes again as a new arrival; it is
            # stored twice, and bound once — the check above)
            assert len(twice) <= sum(d.resends for d in sim.log)

            # 4. A replay of everything: nothing changes.
            window = {
                "received_from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                "received_to": datetime.now(UTC).isoformat(),
            }
            job = await client.post(
                f"{platform.url}/api/ingest-hj212/archive/replays", json=window, headers=HEADERS
            )
            assert job.status_code == 202, job.text
            for _ in range(600):
                progress = await client.get(
                    f"{platform.url}/api/ingest-hj212/archive/replays/{job.json()['id']}",
                    headers=HEADERS,
                )
                if progress.json()["status"] != "queued" and progress.json()["status"] != "running":
                    break
                await asyncio.sleep(0.5)
            assert progress.json()["status"] == "done", progress.json()
            assert progress.json()["published"] > 1000
            await asyncio.sleep(5.0)
            assert await binding_state(engine) == state
    finally:
        if sim is not None:
            await sim.stop()
        if engine is not None:
            await engine.dispose()
        platform.stop()
        await asyncio.to_thread(platform.servers_down)
