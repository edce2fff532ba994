"""Several ingest workers behind one port (`ECOWATT_INGEST_WORKERS`): a device that reconnects
to another worker keeps one session, its duplicate QNs are still detected, and a reverse
command reaches it — against the real Kafka and Redis. The first test runs two workers as
two servers in this process (each with the settings a worker process gets), so that the
device can be sent to the one or the other; the second runs the supervisor as a process
of its own with two worker processes on one SO_REUSEPORT port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import ecowatt_hj212 as hj212
import pytest
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_kernel.contracts import (
    FrameReceived,
    TelemetryReading,
    TopicSpec,
    encode,
)

from .conftest import (
    DeviceClient,
    ServerFactory,
    TopicReader,
    Topics,
    command,
    device_snapshot,
    local_now,
    new_mn,
    registry_with,
    statuses,
    upload,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


async def eventually(condition, what: str, limit_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_device_moving_to_another_worker_keeps_one_session_duplicates_and_commands(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    registry = registry_with(device_snapshot(mn))
    shared = {
        "redis_prefix": f"test-ingest-workers-{uuid.uuid4().hex[:8]}",
        "instance_id": f"test-{uuid.uuid4().hex[:6]}",
        "ingest_workers": 2,
    }
    first = await start_server(registry, consume_commands=True, ingest_worker_index=0, **shared)
    second = await start_server(registry, consume_commands=True, ingest_worker_index=1, **shared)
    assert first.instance != second.instance
    assert {first.instance, second.instance} == {
        f"{shared['instance_id']}-w0",
        f"{shared['instance_id']}-w1",
    }
    await asyncio.sleep(0.5)  # both heartbeats in Redis, both listening for bindings
    frames = await TopicReader(kafka, topics.frames).start()
    readings = await TopicReader(kafka, topics.readings).start()
    results = await TopicReader(kafka, topics.results).start()

    moment = local_now().replace(microsecond=0)
    original = upload(
        mn, qn=hj212_commands.new_qn(moment), data_time=hj212.format_hj212_time(moment)
    )
    old = await DeviceClient.connect(first.port)
    await old.send(original)
    assert (await old.expect("9014")).qn == original.qn

    async def first_stored() -> bool:
        session = first.table.owns(mn)
        return session is not None and session.stored

    await eventually(first_stored, "the first worker's binding in Redis")

    # The device reconnects to the other worker while its old link still looks alive.
    later = moment.replace(second=(moment.second + 30) % 60)
    new = await DeviceClient.connect(second.port)
    await new.send(
        upload(mn, qn=hj212_commands.new_qn(later), data_time=hj212.format_hj212_time(later))
    )
    await new.expect("9014")

    # One session: the first worker closed its older connection of the device.
    with pytest.raises(ConnectionError):
        await old.receive(10)

    async def one_session() -> bool:
        state = await second.store.device_state(mn)
        session = second.table.owns(mn)
        return (
            first.table.owns(mn) is None
            and session is not None
            and state.get("instance") == second.instance
            and state.get("session_id") == session.session_id
            and state.get("online") == "1"
        )

    await eventually(one_session, "one session, on the second worker")
    await asyncio.sleep(1.5)  # the first worker's flush of its ended session has run
    assert await one_session(), "the ended session on the first worker overwrote the new one"
    assert mn not in await first.store.redis.smembers(first.store.sessions_key(first.instance))

    # The re-send of the upload the first worker took is a duplicate on the second.
    await new.send(original)
    assert (await new.expect("9014")).qn == original.qn
    events = await frames.wait_for(
        lambda e: any(isinstance(x, FrameReceived) and x.verdict == "duplicate" for x in e),
        "the duplicate record",
    )
    duplicates = [x for x in events if isinstance(x, FrameReceived) and x.verdict == "duplicate"]
    assert [(d.qn, d.ingest_instance) for d in duplicates] == [(original.qn, second.instance)]
    await readings.wait_for(lambda e: len(e) >= 2, "both readings")
    await asyncio.sleep(1.0)  # a reading of the re-send would have arrived by now
    taken = [r.qn for r in readings.events() if isinstance(r, TelemetryReading)]
    assert sorted(taken) == sorted([original.qn, hj212_commands.new_qn(later)])

    # A reverse command reaches the device on the worker holding it, once.
    order = command(mn, "2012")
    await kafka.publish([encode(order, topic=topics.commands)])
    request = await new.expect("2012", limit_s=30)
    await new.send(hj212.encode(hj212_commands.notification_answer(request)))
    await results.wait_for(
        lambda e: "executed" in statuses(e, order.command_id), "the command executed"
    )
    await asyncio.sleep(1.0)
    assert statuses(results.events(), order.command_id) == ["sent", "executed"]
    await new.nothing(0.5)
    await new.close()
    for reader in (frames, readings, results):
        await reader.stop()


@dataclass
class Supervisor:
    process: asyncio.subprocess.Process
    port: int
    frames_topic: str
    prefix: str
    workers: set[str]


async def start_supervisor(kafka, kafka_bootstrap: str, redis_url: str) -> Supervisor:
    """`python -m ecowatt_ingest.tcp` with two workers on private topics, once it is ready."""
    tag = uuid.uuid4().hex[:8]
    frames_topic = f"test.ingest.workers.{tag}.frames"
    await kafka.ensure_topics(
        [
            TopicSpec(frames_topic, "MN", "", partitions=3),
            *(
                TopicSpec(f"test.ingest.workers.{tag}.{kind}", "MN", "", partitions=1)
                for kind in ("readings", "commands", "results", "registry")
            ),
        ]
    )
    prefix = f"test-ingest-workers-{tag}"
    instance = f"sup-{tag}"
    env = {
        **os.environ,
        "ECOWATT_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ECOWATT_REDIS_URL": redis_url,
        "ECOWATT_ENVIRONMENT": "test",
        "ECOWATT_HJ212_HOST": "127.0.0.1",
        "ECOWATT_HJ212_PORT": "0",
        "ECOWATT_INGEST_WORKERS": "2",
        "ECOWATT_INSTANCE_ID": instance,
        "ECOWATT_REDIS_PREFIX": prefix,
        "ECOWATT_TOPIC_FRAMES": frames_topic,
        "ECOWATT_TOPIC_READINGS": f"test.ingest.workers.{tag}.readings",
        "ECOWATT_TOPIC_COMMANDS": f"test.ingest.workers.{tag}.commands",
        "ECOWATT_TOPIC_COMMAND_RESULTS": f"test.ingest.workers.{tag}.results",
        "ECOWATT_TOPIC_REGISTRY": f"test.ingest.workers.{tag}.registry",
        "ECOWATT_RAISE_NOFILE": "false",
        "ECOWATT_WAIT_FOR_REGISTRY_S": "10",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ecowatt_ingest.tcp",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 120)
        assert line.startswith(b"ready "), line
    except BaseException:
        process.kill()
        await process.wait()
        raise
    workers = {f"{instance}-w0", f"{instance}-w1"}
    return Supervisor(process, int(line.split()[1]), frames_topic, prefix, workers)


async def test_supervisor_runs_workers_on_one_port(
    kafka, kafka_bootstrap: str, redis_url: str, redis
) -> None:
    sup = await start_supervisor(kafka, kafka_bootstrap, redis_url)
    try:
        for name in sup.workers:  # both workers are alive instances of their own
            assert await redis.exists(f"{sup.prefix}:instance:{name}")
        frames = await TopicReader(kafka, sup.frames_topic).start()
        devices = []
        for _ in range(24):  # unknown MNs: each is recorded and refused with 9011
            device = await DeviceClient.connect(sup.port)
            await device.send(upload(new_mn()))
            devices.append(device)
        for device in devices:
            assert (await device.expect("9011", limit_s=30)).params["QnRtn"] == "4"
            await device.close()
        events = await frames.wait_for(lambda e: len(e) >= 24, "24 records")
        served_by = {e.ingest_instance for e in events}
        # SO_REUSEPORT spreads connections by their addresses: 24 all on one worker would be
        # a 1 in 2^23 chance
        assert served_by == sup.workers
        await frames.stop()
    finally:
        with contextlib.suppress(ProcessLookupError):
            sup.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(sup.process.wait(), 60)
    assert code == 0
    for name in sup.workers:  # each worker retired cleanly
        assert not await redis.exists(f"{sup.prefix}:instance:{name}")


async def test_workers_stop_when_their_supervisor_is_killed(
    kafka, kafka_bootstrap: str, redis_url: str, redis
) -> None:
    """A SIGKILLed supervisor cannot stop its workers: each notices it was re-parented,
    retires and closes the port, so a restarted ingest does not share it with orphans."""
    sup = await start_supervisor(kafka, kafka_bootstrap, redis_url)
    sup.process.kill()
    await sup.process.wait()

    async def retired() -> bool:
        return not any([await redis.exists(f"{sup.prefix}:instance:{n}") for n in sup.workers])

    await eventually(retired, "both workers retired", limit_s=30)

    async def port_closed() -> bool:
        try:
            device = await DeviceClient.connect(sup.port)
        except OSError:
            return True
        await device.close()
        return False

    await eventually(port_closed, "nothing listening on the port", limit_s=30)
