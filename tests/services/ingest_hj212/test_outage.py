"""Acks only after the broker's ack, proven by taking a broker away.

A private single-node Kafka (`private_kafka.py`, shared with the end-to-end tests) is started
for this test, stopped with SIGTERM while devices send, and started again on the same data.
While it is down no device gets a 9014; the devices re-send as real loggers do; once it is
back every frame is answered and every frame is in the frames topic.
"""

from __future__ import annotations

import asyncio

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
from .private_kafka import PrivateKafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
