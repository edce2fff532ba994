"""Acks only after the broker's ack, proven by taking a broker away.

A private single-node Kafka (tools/infra.py's `Kafka`, relocated with ECOWATT_INFRA_DIR and
ECOWATT_INFRA_KAFKA_PORT) is started for this test, stopped with SIGTERM while devices
send, and started again on the same data. While it is down no device gets a 9014; the
devices re-send as real loggers do; once it is back every frame is answered and every frame
is in the frames topic. The broker's jars come from ECOWATT_KAFKA_LIBS, or the project's
`.infra/kafka/libs` (`make infra-up`), else tools/infra.py fetches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ecowatt_kernel.bus import KafkaBus, KafkaConnection
from ecowatt_kernel.contracts import FrameReceived

from .conftest import (
    DeviceClient,
    ServerFactory,
    TopicReader,
    device_snapshot,
    make_topics,
    new_mn,
    registry_with,
    upload,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 65000:
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


class PrivateKafka:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = _free_port_pair()
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")
        }
        self.env |= {"ECOWATT_INFRA_DIR": str(home), "ECOWATT_INFRA_KAFKA_PORT": str(self.port)}
        libs = os.environ.get("ECOWATT_KAFKA_LIBS") or str(ROOT / ".infra" / "kafka" / "libs")
        if Path(libs, ".complete").exists():
            (home / "kafka").mkdir(parents=True, exist_ok=True)
            (home / "kafka" / "libs").symlink_to(libs)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> None:
        subprocess.run(
            [sys.executable, str(ROOT / "tools" / "infra.py"), "up", "--only", "kafka"],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=240,
        )

    def pid(self) -> int:
        return int((self.home / "kafka" / "kafka.pid").read_text().split()[0])

    def kill(self, sig: int = signal.SIGTERM, wait_s: float = 60) -> None:
        pid = self.pid()
        os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[PrivateKafka]:
    kafka = PrivateKafka(tmp_path / "infra")
    kafka.up()
    try:
        yield kafka
    finally:
        with contextlib.suppress(OSError, ValueError):
            kafka.kill(signal.SIGKILL, wait_s=10)


async def test_no_answer_while_the_broker_is_down_and_nothing_lost(
    private_kafka: PrivateKafka, start_server: ServerFactory
) -> None:
    bus = KafkaBus(
        KafkaConnection(bootstrap_servers=private_kafka.bootstrap, client_id="outage"),
        linger_ms=2,
        request_timeout_ms=10_000,
    )
    await bus.start()
    topics = await make_topics(bus)
    mns = [new_mn() for _ in range(4)]
    server = await start_server(
        registry_with(*(device_snapshot(mn) for mn in mns)),
        bus=bus,
        publish_retry_max_s=1.0,
        **topics.settings(),
    )
    devices = [await DeviceClient.connect(server.port) for _ in mns]
    sent: dict[str, list[str]] = {mn: [] for mn in mns}

    async def send(index: int, minute: int) -> bytes:
        mn = mns[index]
        message = upload(mn, data_time=f"20261126{9 + minute // 60:02d}{minute % 60:02d}00")
        sent[mn].append(message.qn or "")
        await devices[index].send(message)
        return message

    # broker up: answered as usual
    for index in range(len(mns)):
        message = await send(index, 0)
        answer = await devices[index].expect("9014", limit_s=30)
        assert answer.qn == message.qn

    # broker down: frames arrive, nothing is answered, devices re-send
    await asyncio.to_thread(private_kafka.kill)
    during = [await send(index, 1) for index in range(len(mns))]
    for device in devices:
        await device.nothing(3.0)
    for index, message in enumerate(during):  # the device's retry: the same frame again
        await devices[index].send(message)
    for device in devices:
        await device.nothing(2.0)
    assert server.stats["acks"] == len(mns), "no answer while the broker is down"

    # broker back: every waiting frame is answered, and all of them are stored
    await asyncio.to_thread(private_kafka.up)
    for index, message in enumerate(during):
        first = await devices[index].expect("9014", limit_s=90)
        second = await devices[index].expect("9014", limit_s=30)
        assert first.qn == second.qn == message.qn
    reader = await TopicReader(bus, topics.frames).start()
    expected = {qn for qns in sent.values() for qn in qns}
    events = await reader.wait_for(
        lambda e: expected <= {f.qn for f in e if isinstance(f, FrameReceived)},
        "every frame sent",
        limit_s=60,
    )
    verdicts = {(f.qn, f.verdict) for f in events}
    for message in during:  # the original is accepted, the re-send recorded as a duplicate
        assert (message.qn, "accepted") in verdicts and (message.qn, "duplicate") in verdicts
    readings = await TopicReader(bus, topics.readings).start()
    keys = {f"{mn}|2011|20261126090{m}00" for mn in mns for m in (0, 1)}
    await readings.wait_for(
        lambda e: keys <= {r.idempotency_key for r in e}, "every reading", limit_s=60
    )
    await reader.stop()
    await readings.stop()
    for device in devices:
        await device.close()
    await server.stop()
    await bus.stop()
