"""Reverse commands: device.commands in, HJ 212 requests out (the test plays the device),
9011/9012 correlation by QN, OverTime/ReCount retries, history backfill round trips, the
automatic backfill after a gap, and the multi-instance hand-off through Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import ecowatt_hj212 as hj212
import pytest
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_kernel.contracts import encode

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


async def online(device: DeviceClient, mn: str) -> None:
    """Bind the session (first frame) and wait until its state is in Redis."""
    await device.send(upload(mn))
    await device.expect("9014")
    await asyncio.sleep(0.3)


async def test_command_is_sent_correlated_and_reported(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)), consume_commands=True)
    results = await TopicReader(kafka, topics.results).start()
    device = await DeviceClient.connect(server.port)
    await online(device, mn)
    order = command(mn, "1062", {"RtdInterval": "60"})
    await kafka.publish([encode(order, topic=topics.commands)])
    request = await device.expect("1062", limit_s=30)
    assert request.params["RtdInterval"] == "60" and request.flag == 5 and request.pw == "123456"
    # an answer to some other QN is not this command's answer
    stray = hj212.Message(
        cn="9011", qn="20200101000000000", st="91", pw="123456", mn=mn, flag=4, cp=(("QnRtn", "2"),)
    )
    await device.send(stray)
    await device.send(hj212.encode(hj212_commands.request_answer(request, 1)))
    await device.send(hj212.encode(hj212_commands.execution_answer(request, 1)))
    events = await results.wait_for(
        lambda e: "executed" in statuses(e, order.command_id), "the executed result"
    )
    assert statuses(events, order.command_id) == ["sent", "accepted", "executed"]
    final = events[-1]
    assert final.qn == request.qn and final.qn_rtn == 1 and final.exe_rtn == 1
    assert final.data["requested_by"] == "tester"
    await asyncio.sleep(0.2)
    state = await server.store.command_state(order.command_id)
    assert state["status"] == "executed"
    await device.close()
    await results.stop()


async def test_unanswered_request_is_resent_recount_times_then_times_out(
    start_server: ServerFactory, topics: Topics, kafka, caplog: pytest.LogCaptureFixture
) -> None:
    """Re-sent with its QN `ReCount` times, then `timeout`; logged once (not per retry)."""
    caplog.set_level(logging.INFO, logger="ecowatt_ingest.commands")
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)), consume_commands=True)
    results = await TopicReader(kafka, topics.results).start()
    device = await DeviceClient.connect(server.port)
    await online(device, mn)
    order = command(mn, "2011", overtime_s=1, recount=2)
    await kafka.publish([encode(order, topic=topics.commands)])
    first = await device.expect("2011", limit_s=30)
    second = await device.expect("2011", limit_s=3)
    third = await device.expect("2011", limit_s=3)
    assert first.qn == second.qn == third.qn, "a re-send keeps the QN"
    await device.nothing(1.5)  # ReCount=2: three tries in all
    events = await results.wait_for(
        lambda e: "timeout" in statuses(e, order.command_id), "the timeout"
    )
    assert statuses(events, order.command_id) == ["sent", "timeout"]
    assert events[-1].data["attempts"] == 3
    logged = [r for r in caplog.records if r.name == "ecowatt_ingest.commands"]
    assert [(r.levelname, r.getMessage()) for r in logged] == [("INFO", "command timed out")]
    assert logged[0].mn == mn and logged[0].attempts == 3  # type: ignore[attr-defined]
    await device.close()
    await results.stop()


async def test_refused_request_is_reported_as_rejected(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)), consume_commands=True)
    results = await TopicReader(kafka, topics.results).start()
    device = await DeviceClient.connect(server.port)
    await online(device, mn)
    order = command(mn, "1012")
    await kafka.publish([encode(order, topic=topics.commands)])
    request = await device.expect("1012", limit_s=30)
    await device.send(hj212.encode(hj212_commands.request_answer(request, 2)))
    events = await results.wait_for(
        lambda e: "rejected" in statuses(e, order.command_id), "the rejection"
    )
    assert events[-1].qn_rtn == 2
    await device.close()
    await results.stop()


async def test_history_backfill_round_trip(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)), consume_commands=True)
    results = await TopicReader(kafka, topics.results).start()
    readings = await TopicReader(kafka, topics.readings).start()
    device = await DeviceClient.connect(server.port)
    await online(device, mn)
    order = command(mn, "2051", {"BeginTime": "20261126080000", "EndTime": "20261126083000"})
    await kafka.publish([encode(order, topic=topics.commands)])
    request = await device.expect("2051", limit_s=30)
    assert request.params == {"BeginTime": "20261126080000", "EndTime": "20261126083000"}
    await device.send(hj212.encode(hj212_commands.request_answer(request, 1)))
    for minute in (0, 10, 20):  # the device's buffer: one upload per interval, each answered
        data = upload(
            mn,
            cn="2051",
            data_time=f"2026112608{minute:02d}00",
            values=(("xe0101-Avg", "40.1"), ("xe0101-Flag", "N")),
        )
        await device.send(data)
        answer = await device.expect("9014")
        assert answer.qn == data.qn
    await device.send(hj212.encode(hj212_commands.execution_answer(request, 1)))
    events = await results.wait_for(
        lambda e: "executed" in statuses(e, order.command_id), "the executed backfill"
    )
    assert events[-1].data["uploads"] == 3
    kept = await readings.wait_for(
        lambda e: sum(r.cn == "2051" for r in e) >= 3, "the backfilled readings"
    )
    assert {r.idempotency_key for r in kept if r.cn == "2051"} == {
        f"{mn}|2051|20261126080000",
        f"{mn}|2051|20261126081000",
        f"{mn}|2051|20261126082000",
    }
    await device.close()
    await results.stop()
    await readings.stop()


async def test_reconnect_after_a_gap_requests_minute_and_hour_data(
    start_server: ServerFactory, topics: Topics, kafka, redis
) -> None:
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)), backfill_min_gap_s=600)
    gone = time.time() - 2 * 3600
    await redis.hset(server.store.dev(mn), mapping={"last_seen": str(gone)})
    device = await DeviceClient.connect(server.port)
    await device.send(upload(mn))
    seen = {}
    for _ in range(2):
        frame = await device.receive(10)
        seen[frame.cn] = frame
    assert set(seen) == {"9014", "2051"}
    await device.nothing(0.5)  # one request at a time: 2061 waits for 2051
    minute = seen["2051"]
    begin = hj212.parse_hj212_time(minute.params["BeginTime"])
    expected = datetime.fromtimestamp(gone, UTC).astimezone(server.time.tz).replace(tzinfo=None)
    assert begin is not None and abs((begin - expected).total_seconds()) < 2
    end = hj212.parse_hj212_time(minute.params["EndTime"])
    assert end is not None and abs((end - local_now()).total_seconds()) < 5
    await device.send(hj212.encode(hj212_commands.request_answer(minute, 1)))
    await device.send(hj212.encode(hj212_commands.execution_answer(minute, 100)))  # no data
    hour = await device.expect("2061")
    hour_begin = hj212.parse_hj212_time(hour.params["BeginTime"])
    assert hour_begin == expected.replace(minute=0, second=0, microsecond=0)
    await device.close()


async def test_no_backfill_without_a_gap(start_server: ServerFactory, redis) -> None:
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)), backfill_min_gap_s=600)
    await redis.hset(server.store.dev(mn), mapping={"last_seen": str(time.time() - 60)})
    device = await DeviceClient.connect(server.port)
    await device.send(upload(mn))
    await device.expect("9014")
    await device.nothing(1.0)
    await device.close()


async def test_two_instances_one_runs_the_command_one_reports_offline(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    absent = new_mn()
    registry = registry_with(device_snapshot(mn), device_snapshot(absent))
    prefix = f"test-ingest-shared-{new_mn()[:8]}"
    first = await start_server(registry, consume_commands=True, redis_prefix=prefix)
    second = await start_server(registry, consume_commands=True, redis_prefix=prefix)
    await asyncio.sleep(0.5)  # both heartbeats are in Redis
    results = await TopicReader(kafka, topics.results).start()
    device = await DeviceClient.connect(second.port)
    await online(device, mn)
    order = command(mn, "2012")
    missing = command(absent, "2011")
    await kafka.publish(
        [encode(order, topic=topics.commands), encode(missing, topic=topics.commands)]
    )
    request = await device.expect("2012", limit_s=30)
    await device.send(hj212.encode(hj212_commands.notification_answer(request)))
    events = await results.wait_for(
        lambda e: "executed" in statuses(e, order.command_id) and statuses(e, missing.command_id),
        "both outcomes",
    )
    await asyncio.sleep(1.0)  # any second report would have arrived by now
    events = results.events()
    assert statuses(events, order.command_id) == ["sent", "executed"]
    assert statuses(events, missing.command_id) == ["offline"], "exactly one instance reports"
    await device.nothing(0.5)  # the request was sent once, by the instance holding the device
    assert first.table.owns(mn) is None and second.table.owns(mn) is not None
    await device.close()
    await results.stop()
