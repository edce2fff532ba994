"""The ingest server and the device simulator together, against the real broker.

The simulator is the fleet (its sent log is the ground truth of what went over the wire),
the ingest server is the platform (in this process, real Kafka and Redis, private topics).
Each test proves one promise of issue 5 from the device's side and from the topics:
nothing sent is missing from `hj212.frames`, an answer means durable, split packets are
reassembled once, the policies, reverse commands and backfill, and misbehaving clients
do not slow the devices. The broker outage is in `test_outage_e2e.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import ecowatt_hj212 as hj212
import pytest
from ecowatt_kernel.bus import KafkaBus
from ecowatt_kernel.contracts import (
    DeviceCommand,
    DeviceCommandResult,
    FrameReceived,
    TelemetryReading,
    encode,
)
from ecowatt_simulator import (
    DeviceSettings,
    FaultConfig,
    Fleet,
    LatencyHistogram,
    SimClock,
    Simulator,
)
from ecowatt_simulator.timebase import LocalTime

from .conftest import (
    FAST_DEVICES,
    Collector,
    Register,
    ServerFactory,
    Topics,
    assert_every_frame_recorded,
)

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # 08:00 local: production shifts run
LOCAL = LocalTime("Asia/Shanghai")


def data_time_of(frame: FrameReceived) -> str | None:
    return hj212.decode(frame.raw).params.get("DataTime")


# ---------------------------------------------------------------------------------------
async def test_every_frame_the_simulator_sent_is_in_hj212_frames(
    kafka: KafkaBus, topics: Topics, register: Register, start_server: ServerFactory
) -> None:
    """A mixed fleet (2017 and 2025 devices, MODBUS CRC variants registered for some, and
    the faults 2005-style frames, garbage between frames, lower-case CRC, drifting clocks)
    for six simulated hours: every upload answered, every QN and every 2005-style frame
    (by CN and DataTime) in `hj212.frames` exactly once as a first arrival, and one reading
    per idempotency key."""
    fleet = Fleet.synthetic(12, circuits=(2, 5), seed=501)
    mns = sorted(fleet.devices)
    variants = {mns[0]: "modbus_hi_lo", mns[1]: "modbus_lo_hi"}
    devices = {
        mn: dataclasses.replace(
            spec,
            crc_variant=variants.get(mn, "standard"),  # type: ignore[arg-type]
            protocol_version="2025" if mn == mns[2] else spec.protocol_version,
        )
        for mn, spec in fleet.devices.items()
    }
    fleet = dataclasses.replace(fleet, devices=devices)
    view = await register(kafka, fleet)
    server = await start_server(view, **FAST_DEVICES)
    frames = await Collector(kafka, topics.frames).start()
    readings = await Collector(kafka, topics.readings).start()
    faults = FaultConfig(
        shares={"frames_2005": 0.17, "garbage": 0.17, "lowercase_crc": 0.1, "clock_drift": 0.1}
    )
    sim = Simulator(
        fleet,
        port=server.port or 0,
        faults=faults,
        clock=SimClock.fast(START),
        settings=DeviceSettings(sample_s=60, window=8),
    )

    assert await sim.run(timedelta(hours=6), drain_timeout=60), sim.log.unacked()
    assert sim.log.unacked() == {}
    records = await assert_every_frame_recorded(sim, frames)

    summary = sim.log.summary()
    assert summary["frames"] > 3000 and summary["resends"] == 0
    # (a device's 9011 and 9012 answers carry the QN of the platform's request: key by CN)
    first_arrivals = Counter(
        (f.mn, f.cn, f.qn) for f in records if f.qn is not None and f.verdict != "duplicate"
    )
    assert max(first_arrivals.values()) == 1, "a frame recorded twice as a first arrival"
    by_device: dict[str, Counter[str]] = {}
    for f in records:
        if f.mn is not None:
            by_device.setdefault(f.mn, Counter())[f.verdict] += 1
    for mn in mns:  # registered, right PW, registered CRC variant: every frame accepted
        assert set(by_device[mn]) <= {"accepted", "rejected"}, (mn, by_device[mn])
        rejected = {f.reason_code for f in records if f.mn == mn and f.verdict == "rejected"}
        assert rejected <= {"garbage"}, (mn, rejected)  # junk between frames, not frames
    assigned = sim.plan.assignments()
    old_style = [mn for mn, kinds in assigned.items() if "frames_2005" in kinds]
    assert old_style and all(sim.log[mn].no_ack and not sim.log[mn].qns for mn in old_style)
    garbage = [mn for mn, kinds in assigned.items() if "garbage" in kinds]
    assert sum(sim.log[mn].garbage_bytes for mn in garbage) > 0
    spans = [f for f in records if f.verdict == "rejected"]
    # junk before the first frame of a connection has no MN yet
    assert spans and {f.mn for f in spans} - {None} <= set(garbage), "junk: rejected spans"
    assert all(f.peer and f.cn is None and f.raw for f in spans)
    drifting = [mn for mn, kinds in assigned.items() if "clock_drift" in kinds]
    assert any(f.cn == "1013" for f in records if f.mn in drifting)

    # readings: one per (MN, CN, DataTime) of an accepted data frame
    data = {
        f"{f.mn}|{f.cn}|{data_time_of(f)}"
        for f in records
        if f.verdict == "accepted" and f.cn in ("2011", "2051", "2061", "2031")
    }
    events = await readings.wait_for(
        lambda e: (
            len({r.idempotency_key for r in e if isinstance(r, TelemetryReading)}) >= len(data)
        ),
        "a reading per data frame",
    )
    keys = Counter(r.idempotency_key for r in events if isinstance(r, TelemetryReading))
    assert set(keys) == data and max(keys.values()) == 1
    await frames.stop()
    await readings.stop()


# ---------------------------------------------------------------------------------------
async def test_split_packets_are_reassembled_and_published_once(
    kafka: KafkaBus, topics: Topics, register: Register, start_server: ServerFactory
) -> None:
    """Every device splits every upload into PNUM/PNO parts of at most 300 bytes (some
    written in 2-3 TCP pieces 1 ms apart): every part is recorded and answered, and each
    upload gives exactly one reading holding the codes of all its parts."""
    fleet = Fleet.synthetic(4, circuits=5, seed=502)
    view = await register(kafka, fleet)
    server = await start_server(view, **FAST_DEVICES)
    frames = await Collector(kafka, topics.frames).start()
    readings = await Collector(kafka, topics.readings).start()
    sim = Simulator(
        fleet,
        port=server.port or 0,
        faults=FaultConfig(shares={"split_packets": 1}),
        clock=SimClock.fast(START),
        settings=DeviceSettings(sample_s=60),
    )
    assert await sim.run(timedelta(hours=2), drain_timeout=60), sim.log.unacked()
    records = await assert_every_frame_recorded(sim, frames)
    assert {f.verdict for f in records} == {"accepted"}

    sets: dict[str, dict[str, Any]] = {}  # idempotency key -> PNUM, parts, codes
    # (commands, e.g. the 1012 after a 1013, and their answers aside)
    for f in records:
        if f.cn not in ("2011", "2051", "2061", "2031"):
            continue
        frame = hj212.decode(f.raw)
        assert frame.is_split, "every upload of these devices is split"
        key = f"{frame.mn}|{frame.cn}|{frame.params['DataTime']}"
        entry = sets.setdefault(key, {"pnum": frame.pnum, "pnos": set(), "codes": set()})
        entry["pnos"].add(frame.pno)
        entry["codes"] |= set(frame.codes)
    assert all(e["pnos"] == set(range(1, e["pnum"] + 1)) for e in sets.values())
    assert max(e["pnum"] for e in sets.values()) >= 3
    events = await readings.wait_for(
        lambda e: len(e) >= len(sets), f"{len(sets)} readings (one per upload)"
    )
    await asyncio.sleep(1.0)  # a second reading of the same upload would arrive by now
    keys = Counter(r.idempotency_key for r in events)
    assert set(keys) == set(sets), "one reading per upload; no partial set"
    assert max(keys.values()) == 1
    for reading in events:
        assert set(reading.items) == sets[reading.idempotency_key]["codes"]
    await frames.stop()
    await readings.stop()


# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["lenient", "strict"])
async def test_unknown_mn_and_wrong_password_under_each_policy(
    policy: str,
    kafka: KafkaBus,
    topics: Topics,
    register: Register,
    start_server: ServerFactory,
) -> None:
    """Six devices: one sends a wrong PW (the simulator's `wrong_password` fault), two are
    not in the registry. Under either policy (they differ only for devices registered
    without a PW) their frames are recorded — `rejected` / `bad_password` and `unregistered`
    / `unknown_mn` — refused with 9011 QnRtn 3 (PW) / 4 (MN), never published as readings,
    and only the unknown MNs are listed as unregistered; the registered devices are
    unaffected. (The PW-failure limit is lifted here: it would block the wrong-PW device
    after 5 failures and close its links, and uploads it wrote to a closed link are never
    read, so the sent log could not be checked against `hj212.frames`;
    `tests/services/ingest_hj212/test_door.py` hits the limit.)"""
    fleet = Fleet.synthetic(6, circuits=2, seed=503)
    faults = FaultConfig(shares={"wrong_password": 1 / 6})
    sim = Simulator(
        fleet,
        port=0,
        faults=faults,
        clock=SimClock(START.timestamp(), speed=900),  # 2011 every 1/15 s per device
        settings=DeviceSettings(
            sample_s=60, ack_timeout_s=0.5, recount=2, backoff_base_s=0.1, backoff_max_s=0.5
        ),
    )
    (bad_pw,) = [mn for mn, kinds in sim.plan.assignments().items() if "wrong_password" in kinds]
    unknown = [mn for mn in sorted(fleet.devices) if mn != bad_pw][:2]
    registered = dataclasses.replace(
        fleet, devices={mn: d for mn, d in fleet.devices.items() if mn not in unknown}
    )
    view = await register(kafka, registered)
    server = await start_server(
        view, device_policy=policy, pw_failures_max=1_000_000, **FAST_DEVICES
    )
    sim.port = server.port or 0
    frames = await Collector(kafka, topics.frames).start()
    readings = await Collector(kafka, topics.readings).start()

    answered = await sim.run(timedelta(minutes=30), drain_timeout=3)
    assert not answered
    good = sorted(set(fleet.devices) - {bad_pw, *unknown})
    records = await assert_every_frame_recorded(sim, frames)
    verdicts: dict[str, set[tuple[str, str | None]]] = {}
    for f in records:
        if f.mn is not None and f.verdict != "duplicate":
            verdicts.setdefault(f.mn, set()).add((f.verdict, f.reason_code))
    for mn in good:
        assert verdicts[mn] == {("accepted", None)}
        assert sim.log[mn].unacked == [] and sim.log[mn].acked_count > 10
    await readings.wait_for(
        lambda e: {r.mn for r in e} >= set(good), "readings of the registered devices"
    )
    assert verdicts[bad_pw] == {("rejected", "bad_password")}
    assert sim.log[bad_pw].acked_count == 0 and set(sim.log[bad_pw].refused) == {"3"}
    for mn in unknown:
        assert verdicts[mn] == {("unregistered", "unknown_mn")}
        assert sim.log[mn].acked_count == 0 and set(sim.log[mn].refused) == {"4"}
        assert sim.log[mn].resends > 0, "a refused upload is sent again"
    refused = [f for f in records if f.mn in {bad_pw, *unknown}]
    assert all(f.session_id is None for f in refused), "no session for a refused device"
    await asyncio.sleep(1.5)  # state reaches Redis every second
    assert not {r.mn for r in readings.readings()} & {bad_pw, *unknown}
    listed = await server.store.unregistered_seen()
    assert set(listed) == set(unknown)
    await frames.stop()
    await readings.stop()


# ---------------------------------------------------------------------------------------
def command(mn: str, cn: str, params: dict[str, str] | None = None) -> DeviceCommand:
    return DeviceCommand(
        command_id=f"e2e-{cn}-{time.monotonic_ns()}",
        mn=mn,
        cn=cn,
        params=params or {},
        overtime_s=5,
        recount=2,
        requested_by="e2e",
        requested_at=datetime.now(UTC),
    )


async def test_reverse_commands_and_backfill_round_trip_with_the_simulator_answering(
    kafka: KafkaBus, topics: Topics, register: Register, start_server: ServerFactory
) -> None:
    """Commands through `device.commands` reach the simulated devices, which answer 9011 /
    9012 by QN (and with data): get time, set the real-time interval, set the clock
    (refused: ExeRtn 3), minute-data backfill from the device's history (each upload
    answered, one reading per record, the same idempotency keys as the original uploads),
    hour data for a range with no history (ExeRtn 100)."""
    fleet = Fleet.synthetic(2, circuits=3, seed=504)
    mn, other = sorted(fleet.devices)
    view = await register(kafka, fleet)
    server = await start_server(view, consume_commands=True, **FAST_DEVICES)
    frames = await Collector(kafka, topics.frames).start()
    readings = await Collector(kafka, topics.readings).start()
    results = await Collector(kafka, topics.results).start()
    sim = Simulator(
        fleet, port=server.port or 0, clock=SimClock.fast(START), settings=DeviceSettings()
    )
    await sim.start(timedelta(hours=3))
    try:
        assert await sim.wait(drain_timeout=60)  # history kept; the links stay open
        history = list(sim.devices[mn].history["2051"])
        begin, end = START + timedelta(hours=1), START + timedelta(hours=2)
        wanted = [r for r in history if begin.timestamp() <= r[0] <= end.timestamp()]
        assert len(wanted) == 7  # 10-minute data, both ends included
        fmt = LOCAL.fmt14
        orders = {
            "time": command(mn, "1011"),
            "rtd": command(mn, "1062", {"RtdInterval": "120"}),
            # the platform's "now" is days from the device's simulated clock: refused
            "set_time": command(other, "1012"),
            "backfill": command(
                mn,
                "2051",
                {"BeginTime": fmt(begin.timestamp()), "EndTime": fmt(end.timestamp())},
            ),
            "empty": command(
                other, "2061", {"BeginTime": "20250101000000", "EndTime": "20250101060000"}
            ),
        }
        await kafka.publish([encode(o, topic=topics.commands) for o in orders.values()])

        def final(events: list[Any], order: DeviceCommand) -> DeviceCommandResult | None:
            for e in events:
                if (
                    isinstance(e, DeviceCommandResult)
                    and e.command_id == order.command_id
                    and e.finished_at is not None
                ):
                    return e
            return None

        events = await results.wait_for(
            lambda e: all(final(e, o) for o in orders.values()), "every command's result", 60
        )
        outcome = {name: final(events, order) for name, order in orders.items()}
        assert {k: (v.status if v else None) for k, v in outcome.items()} == {
            "time": "executed",
            "rtd": "executed",
            "set_time": "failed",
            "backfill": "executed",
            "empty": "failed",
        }
        assert outcome["set_time"].exe_rtn == 3 and outcome["empty"].exe_rtn == 100  # type: ignore[union-attr]
        # uploads counted in frames: a record longer than 1,024 bytes comes in PNUM parts
        uploads = outcome["backfill"].data["uploads"]  # type: ignore[union-attr]
        assert uploads == sim.log[mn].by_kind["backfill"] >= len(wanted)
        for name, order in orders.items():
            states = [
                e.status
                for e in events
                if isinstance(e, DeviceCommandResult) and e.command_id == order.command_id
            ]
            assert states[:2] == ["sent", "accepted"], (name, states)
        assert sim.devices[mn].rtd_interval == 120 and sim.devices[other].rtd_interval == 60
        assert await sim.wait(drain_timeout=30) and sim.log.unacked() == {}

        # the devices' answers and the backfilled uploads are all in hj212.frames
        records = await assert_every_frame_recorded(sim, frames)
        answers = {(f.cn, f.qn) for f in records if f.mn == mn}
        request_qn = outcome["time"].qn  # type: ignore[union-attr]
        assert {("9011", request_qn), ("1011", request_qn), ("9012", request_qn)} <= answers
        # one reading per (MN, CN, DataTime): the backfill re-sends the originals' keys
        labels = {f"{mn}|2051|{data_time}" for _, data_time, _ in wanted}
        events = await readings.wait_for(
            lambda e: sum(1 for r in e if r.idempotency_key in labels) >= 2 * len(labels),
            "the original and the backfilled minute readings",
        )
        again = Counter(r.idempotency_key for r in events if r.idempotency_key in labels)
        assert set(again) == labels and set(again.values()) == {2}
    finally:
        await sim.stop()
        await frames.stop()
        await readings.stop()
        await results.stop()


# ---------------------------------------------------------------------------------------
class BadClients:
    """A garbage flood, huge declared lengths, and one-byte-per-second senders."""

    def __init__(self, port: int, slow: int = 5) -> None:
        self.port = port
        self.slow = slow
        self.tasks: list[asyncio.Task[None]] = []
        self.sent = Counter[str]()

    async def _garbage(self) -> None:
        junk = bytes(range(0x20, 0x7F)).replace(b"#", b"*") * 40  # 3.8 KB, never "##"
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                with contextlib.suppress(OSError):
                    while not writer.is_closing():
                        writer.write(junk)
                        await writer.drain()
                        self.sent["garbage"] += len(junk)
                        await asyncio.sleep(0.02)  # ~190 KB/s
                writer.close()
            await asyncio.sleep(0.05)

    async def _huge(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                with contextlib.suppress(OSError):
                    for _ in range(200):
                        # a declared length of 9999 bytes, then much less than that
                        writer.write(b"##9999QN=20261120000000000;ST=31;CN=2011;" + b"A" * 500)
                        await writer.drain()
                        self.sent["huge"] += 1
                        await asyncio.sleep(0.01)
                writer.close()

    async def _slow(self) -> None:
        frame = hj212.encode(
            hj212.Message(
                cn="2011",
                qn="20261120000000000",
                st="31",
                pw="123456",
                mn="SLOW0000000000000000000",
                flag=5,
                cp=(("DataTime", "20261120000000"), ("xe0101-Rtd", "1.0")),
            )
        )
        _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            for byte in frame:
                writer.write(bytes([byte]))
                await writer.drain()
                self.sent["slow"] += 1
                await asyncio.sleep(1.0)
        finally:
            writer.close()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._garbage()), loop.create_task(self._huge())]
        self.tasks += [loop.create_task(self._slow()) for _ in range(self.slow)]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task


async def test_garbage_huge_lengths_and_slow_senders_do_not_slow_the_devices(
    kafka: KafkaBus, topics: Topics, register: Register, start_server: ServerFactory
) -> None:
    """The simulated devices' ack latency (device side, write to 9014) and rate, alone and
    while a client floods garbage, another declares 9999-byte frames and five dribble a
    frame one byte per second. Everything runs on this test's one event loop, so the
    attackers' own CPU is in the second figure too: the bound is generous, but an attacker
    that blocked the server (head-of-line, a buffer scan per byte) would blow it."""
    fleet = Fleet.synthetic(8, circuits=3, seed=505)
    view = await register(kafka, fleet)
    server = await start_server(view, **FAST_DEVICES)
    settings = DeviceSettings(sample_s=60, window=4, minute_data=False)

    async def measure(start: datetime) -> tuple[LatencyHistogram, float, int]:
        sim = Simulator(fleet, port=server.port or 0, clock=SimClock.fast(start), settings=settings)
        began = time.perf_counter()
        assert await sim.run(timedelta(hours=3), drain_timeout=60)
        wall = time.perf_counter() - began
        assert sim.log.unacked() == {}
        return sim.log.latency, wall, sim.log.summary()["acked"]

    await measure(START - timedelta(days=1))  # warm-up: sessions, PW verdicts, producer
    alone, alone_s, alone_n = await measure(START)
    bad = BadClients(server.port or 0)
    bad.start()
    try:
        await asyncio.sleep(1.0)
        attacked, attacked_s, attacked_n = await measure(START + timedelta(days=1))
    finally:
        await bad.stop()
    p50 = (alone.quantile(0.5) or 0, attacked.quantile(0.5) or 0)
    p99 = (alone.quantile(0.99) or 0, attacked.quantile(0.99) or 0)
    print(
        f"devices alone: {alone_n / alone_s:.0f} acks/s, p50 {p50[0] * 1e3:.1f} ms,"
        f" p99 {p99[0] * 1e3:.1f} ms; under attack: {attacked_n / attacked_s:.0f} acks/s,"
        f" p50 {p50[1] * 1e3:.1f} ms, p99 {p99[1] * 1e3:.1f} ms; attack {dict(bad.sent)}"
    )
    assert bad.sent["garbage"] > 100_000 and bad.sent["huge"] > 50 and bad.sent["slow"] >= 5
    assert server.stats["rejected"] > 50, "the attackers' bytes were recorded as rejected"
    assert p99[1] <= max(3 * p99[0], p99[0] + 0.050), "the devices' p99 ack latency suffered"
    assert attacked_n / attacked_s >= 0.4 * alone_n / alone_s, "the devices' rate collapsed"
