"""The durable in-process bus (`DiskBus`): what survives a crash, what a full or refusing disk
does, checkpoints, compaction and retention. The contract suite (test_contract.py) runs
against it too; a crash here is `abandon()` (nothing more is written, the folder released),
the real `kill -9` is in tests/standalone/test_crash.py."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from ecowatt_kernel.bus import (
    BusUnavailableError,
    DiskBus,
    Message,
    PublishError,
    Record,
)
from ecowatt_kernel.bus import journal as journal_module
from ecowatt_kernel.bus.segment import Checkpoint, read_segment
from ecowatt_kernel.contracts import TopicSpec

from .test_contract import Collector, eventually


def messages(topic: str, values: Sequence[str], key: str = "k") -> list[Message]:
    return [Message(topic, key.encode(), v.encode()) for v in values]


async def started(folder: Path, **options: int) -> DiskBus:
    bus = DiskBus(folder, **options)
    await bus.start()
    await bus.ensure_topics([TopicSpec("t", "k", "test", partitions=3)])
    return bus


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("segment-*.log"))


async def flush(bus: DiskBus) -> None:
    """Wait until everything queued (commits included) is durable."""
    await bus.journal.write(b"")


# ------------------------------------------------------------------------ crash recovery


async def test_a_crash_keeps_every_acknowledged_record_and_redelivers_the_uncommitted(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "bus"
    first = await started(folder)
    sent = [f"m{i}" for i in range(300)]
    keys = [f"dev{i % 7}" for i in range(300)]
    await first.publish(
        [Message("t", k.encode(), v.encode()) for k, v in zip(keys, sent, strict=True)]
    )
    handled = Collector()
    release = asyncio.Event()

    async def slow(records: Sequence[Record]) -> None:
        await handled(records)
        if len(handled.records) >= 100:
            await release.wait()  # "crashes" while handling: no commit after this point

    subscription = await first.subscribe(group="g", topics=["t"], handler=slow, max_batch=20)
    await eventually(lambda: len(handled.records) >= 100, "a first part handled")
    await flush(first)
    committed = dict(first._groups["g"].committed)
    ends_before = await first.end_offsets("t")
    await subscription.kill()
    first.abandon()
    assert committed, "some batches were committed before the crash"

    second = await started(folder)
    try:
        assert await second.end_offsets("t") == ends_before, "offsets continue where they were"
        again = Collector()
        await second.subscribe(group="g", topics=["t"], handler=again)
        everything = {s.encode() for s in sent}
        await eventually(
            lambda: {r.value for r in handled.records + again.records} >= everything,
            "every record after the restart",
        )
        await asyncio.sleep(0.2)
        redelivered = {(r.partition, r.offset) for r in again.records}
        handled_offsets = {(r.partition, r.offset) for r in handled.records}
        expected = {
            (r.partition, r.offset)
            for r in handled.records
            if r.offset >= committed.get(("t", r.partition), 0)
        } | ({(p, o) for p, o in redelivered} - handled_offsets)
        assert redelivered == expected, "exactly the uncommitted records come again"
        assert len(again.records) == len(redelivered), "each once"
        # A new record gets the next offset, not one already used.
        await second.publish([Message("t", b"dev0", b"after")])
        partition = next(r.partition for r in handled.records if r.key == b"dev0")
        assert (await second.end_offsets("t"))[partition] == ends_before[partition] + 1
    finally:
        await second.stop()


async def test_committed_offsets_and_records_survive_a_clean_stop(tmp_path: Path) -> None:
    folder = tmp_path / "bus"
    first = await started(folder)
    seen = Collector()
    await first.subscribe(group="g", topics=["t"], handler=seen)
    await first.publish(messages("t", ["a", "b", "c"]))
    await eventually(lambda: len(seen.records) == 3, "the first three")
    await first.stop()

    second = await started(folder)
    try:
        later = Collector()
        await second.subscribe(group="g", topics=["t"], handler=later)
        await second.publish(messages("t", ["d"]))
        await eventually(lambda: later.values == [b"d"], "only the new record")
        await asyncio.sleep(0.2)
        assert later.values == [b"d"]
    finally:
        await second.stop()


async def test_a_second_process_cannot_open_the_same_folder(tmp_path: Path) -> None:
    bus = await started(tmp_path / "bus")
    try:
        with pytest.raises(BusUnavailableError, match="in use by another process"):
            DiskBus(tmp_path / "bus")
    finally:
        await bus.stop()


async def test_a_folder_that_cannot_be_created_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(BusUnavailableError, match="cannot be used"):
        DiskBus(tmp_path / "file" / "bus")


async def test_a_torn_tail_is_cut_and_everything_acknowledged_stays(tmp_path: Path) -> None:
    folder = tmp_path / "bus"
    first = await started(folder)
    await first.publish(messages("t", [f"v{i}" for i in range(50)]))
    first.abandon()
    segment = segments(folder)[-1]
    good = segment.stat().st_size
    with segment.open("ab") as tail:  # a write that never reached fdatasync
        tail.write(b"\x40\x00\x00\x00\x01\x02\x03")

    second = await started(folder)
    try:
        assert segment.stat().st_size == good
        seen = Collector()
        await second.subscribe(group="g", topics=["t"], handler=seen)
        await eventually(lambda: len(seen.records) == 50, "the 50 records")
        await second.publish(messages("t", ["after"]))
        await eventually(lambda: seen.values[-1] == b"after", "appending after the cut")
    finally:
        await second.stop()
    assert read_segment(segments(folder)[-1]).problem is None


async def test_a_corrupt_entry_ends_the_segment_and_is_kept_aside(tmp_path: Path) -> None:
    folder = tmp_path / "bus"
    first = await started(folder)
    await first.publish(messages("t", ["one"]))
    await first.publish(messages("t", ["two"]))
    first.abandon()
    segment = segments(folder)[-1]
    data = bytearray(segment.read_bytes())
    position = data.rindex(b"two")
    data[position] ^= 0xFF
    segment.write_bytes(bytes(data))

    second = await started(folder)
    try:
        seen = Collector()
        await second.subscribe(group="g", topics=["t"], handler=seen)
        await eventually(lambda: seen.values == [b"one"], "the intact prefix")
    finally:
        await second.stop()
    assert (folder / (segment.name + ".corrupt")).exists()


# ------------------------------------------------------------------------ durability order


async def test_publishers_share_one_fdatasync_and_consumers_see_only_durable_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = await started(tmp_path / "bus")
    syncs: list[int] = []
    gate = threading.Event()
    real_sync = journal_module._sync

    def slow_sync(fd: int) -> None:
        gate.wait(5)
        syncs.append(fd)
        real_sync(fd)

    monkeypatch.setattr(journal_module, "_sync", slow_sync)
    seen = Collector()
    try:
        await bus.subscribe(group="g", topics=["t"], handler=seen)
        publishes = [
            asyncio.create_task(bus.publish(messages("t", [f"p{i}"], key=f"k{i}")))
            for i in range(40)
        ]
        await asyncio.sleep(0.3)
        assert seen.records == [], "nothing is readable before its fdatasync"
        assert not any(p.done() for p in publishes), "publish waits for the disk"
        gate.set()
        await asyncio.gather(*publishes)
        await eventually(lambda: len(seen.records) == 40, "all 40 after the fdatasync")
        assert len(syncs) <= 3, f"40 concurrent publishes took {len(syncs)} fdatasyncs"
    finally:
        gate.set()
        await bus.stop()


@pytest.mark.parametrize(
    "code", [errno.ENOSPC, errno.EROFS, errno.EIO], ids=["disk-full", "read-only", "io-error"]
)
async def test_a_refused_write_fails_the_publish_stores_nothing_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """The disk refuses a write half-way (some bytes written, then the error): the publish
    raises, the file is cut back, consumers never see the records, readiness says so; once
    the disk accepts writes again publishing resumes, and after a crash the journal holds
    exactly what was acknowledged."""
    folder = tmp_path / "bus"
    bus = await started(folder)
    seen = Collector()
    await bus.subscribe(group="g", topics=["t"], handler=seen)
    await bus.publish(messages("t", ["before"]))
    await eventually(lambda: seen.values == [b"before"], "the first record")
    real_write = journal_module._write_all
    refusing = True

    def refuse_half_way(fd: int, data: bytes) -> None:
        if refusing and data:
            os.write(fd, data[: max(1, len(data) // 2)])
            raise OSError(code, os.strerror(code))
        real_write(fd, data)

    monkeypatch.setattr(journal_module, "_write_all", refuse_half_way)
    size = bus.journal.size
    with pytest.raises(PublishError, match=f"errno {code}"):
        await bus.publish(messages("t", ["lost-1", "lost-2"]))
    with pytest.raises(PublishError):
        await bus.publish(messages("t", ["lost-3"]))
    assert not await bus.healthy()
    assert segments(folder)[-1].stat().st_size == size, "the torn write was cut back"
    await asyncio.sleep(0.2)
    assert seen.values == [b"before"]

    refusing = False  # space returns
    await bus.publish(messages("t", ["after"]))
    assert await bus.healthy()
    await eventually(lambda: seen.values == [b"before", b"after"], "publishing resumed")
    await flush(bus)
    await next(iter(bus._subscriptions)).kill()
    bus.abandon()

    again = await started(folder)
    try:
        fresh = Collector()
        await again.subscribe(group="fresh", topics=["t"], handler=fresh)
        await eventually(lambda: len(fresh.records) == 2, "the acknowledged records")
        await asyncio.sleep(0.2)
        assert fresh.values == [b"before", b"after"]
    finally:
        await again.stop()
    assert read_segment(segments(folder)[-1]).problem is None


# ------------------------------------------------------------------------ checkpoints


async def test_a_checkpoint_keeps_the_live_set_compacts_and_drops_the_consumed(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "bus"
    bus = await started(folder)
    await bus.ensure_topics([TopicSpec("c", "k", "compacted", partitions=1, compacted=True)])
    consumed = Collector()
    await bus.subscribe(group="reader", topics=["t"], handler=consumed)
    await bus.publish(messages("t", [f"done{i}" for i in range(500)]))
    await eventually(lambda: len(consumed.records) == 500, "the consumed topic read")
    await bus.publish([Message("c", f"e{i % 3}".encode(), f"rev{i}".encode()) for i in range(9)])
    await bus.publish(messages("u", ["unread"]))  # a topic nobody reads yet
    old = segments(folder)[-1]
    size_before = old.stat().st_size
    await flush(bus)
    assert await bus.checkpoint()
    new = segments(folder)
    assert len(new) == 1 and new[0] != old and not old.exists()
    assert new[0].stat().st_size < size_before / 4, "consumed records are not rewritten"
    ends = {name: await bus.end_offsets(name) for name in ("t", "c", "u")}
    await next(iter(bus._subscriptions)).kill()
    bus.abandon()

    again = await started(folder)
    try:
        assert {name: await again.end_offsets(name) for name in ("t", "c", "u")} == ends
        compacted, unread, reread = Collector(), Collector(), Collector()
        await again.subscribe(group="view", topics=["c"], handler=compacted)
        await again.subscribe(group="late", topics=["u"], handler=unread)
        await again.subscribe(group="reader", topics=["t"], handler=reread)
        await eventually(lambda: len(compacted.records) == 3, "newest per key")
        await eventually(lambda: unread.values == [b"unread"], "the unread record")
        await asyncio.sleep(0.2)
        assert sorted(compacted.values) == [b"rev6", b"rev7", b"rev8"]
        assert reread.records == [], "what the group committed is not delivered again"
    finally:
        await again.stop()


async def test_checkpoints_happen_by_size_and_a_failed_one_does_not_stop_publishing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "bus"
    bus = await started(folder, checkpoint_bytes=20_000)
    reader = Collector()
    await bus.subscribe(group="r", topics=["t"], handler=reader)
    real = journal_module._write_checkpoint_body

    async def refuse(state: object, partial: Path) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module, "_write_checkpoint_body", refuse)
    for i in range(30):
        await bus.publish(messages("t", [f"{i}-" + "x" * 1000]))
    assert len(segments(folder)) == 1
    first = segments(folder)[0]
    assert first.stat().st_size > 20_000, "the failed checkpoint left appends going on"
    monkeypatch.setattr(journal_module, "_write_checkpoint_body", real)
    bus.journal._next_checkpoint_try = 0.0
    await eventually(lambda: len(reader.records) == 30, "all read")
    await flush(bus)
    for i in range(30):
        await bus.publish(messages("t", [f"late{i}-" + "x" * 1000]))
    await eventually(lambda: len(reader.records) == 60, "the second round read")
    assert segments(folder)[0] != first, "a checkpoint by size"
    await bus.stop()


async def test_a_checkpoint_interrupted_before_its_rename_is_ignored(tmp_path: Path) -> None:
    folder = tmp_path / "bus"
    bus = await started(folder)
    await bus.publish(messages("t", ["kept"]))
    bus.abandon()
    live = segments(folder)[-1]
    number = int(live.name[len("segment-") : -len(".log")]) + 1
    (folder / f"segment-{number:012d}.log.partial").write_bytes(b"half a checkpoint")
    again = await started(folder)
    try:
        seen = Collector()
        await again.subscribe(group="g", topics=["t"], handler=seen)
        await eventually(lambda: seen.values == [b"kept"], "the record of the live segment")
        assert not list(folder.glob("*.partial"))
    finally:
        await again.stop()


# ------------------------------------------------------------------------ retention


async def test_retention_by_age_and_size_drops_the_oldest(tmp_path: Path) -> None:
    bus = await started(tmp_path / "bus", retention_bytes=5_000, retention_ms=60_000)
    try:
        await bus.publish(messages("u", [f"{i:04d}" + "y" * 996 for i in range(8)]))
        retained = bus.read_all("u")
        assert len(retained) == 8
        assert bus.apply_retention() == 4, "8 KB over a 5 KB limit: the four oldest go"
        assert [r.value[:4] for r in bus.read_all("u")] == [b"0004", b"0005", b"0006", b"0007"]
        newest = max(r.timestamp_ms for r in bus.read_all("u"))
        assert bus.apply_retention(now_ms=newest + 61_000) == 4, "all older than a minute"
        assert bus.read_all("u") == []
        assert (await bus.end_offsets("u"))[0] + (await bus.end_offsets("u"))[1] + (
            await bus.end_offsets("u")
        )[2] == 8, "offsets are not reused"
    finally:
        await bus.stop()


async def test_records_published_while_a_checkpoint_is_written_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint is written in a thread while publishes go on into the live segment;
    what they appended meanwhile is copied behind the checkpoint before the switch."""
    folder = tmp_path / "bus"
    bus = await started(folder)
    await bus.publish(messages("t", [f"old{i}" for i in range(20)]))
    gate = asyncio.Event()
    real = journal_module._write_checkpoint_body

    async def slow_body(state: Checkpoint, partial: Path) -> int:
        await gate.wait()
        return await real(state, partial)

    monkeypatch.setattr(journal_module, "_write_checkpoint_body", slow_body)
    checkpoint = asyncio.create_task(bus.checkpoint())
    await asyncio.sleep(0.1)
    for i in range(10):  # not blocked by the checkpoint in progress
        await asyncio.wait_for(bus.publish(messages("t", [f"new{i}"])), 5)
    gate.set()
    assert await checkpoint
    await bus.publish(messages("t", ["last"]))
    bus.abandon()

    again = await started(folder)
    try:
        seen = Collector()
        await again.subscribe(group="g", topics=["t"], handler=seen)
        await eventually(lambda: len(seen.records) == 31, "all 31 records")
        assert sorted(seen.values) == sorted(
            [f"old{i}".encode() for i in range(20)]
            + [f"new{i}".encode() for i in range(10)]
            + [b"last"]
        )
    finally:
        await again.stop()
