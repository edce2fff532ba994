"""The bus journal's format on disk: entries, reading a segment, checkpoint contents.

An entry is `u32 body length, u32 CRC-32 of the body, body`; the body starts with its kind:

    TOPIC    name, partitions, compacted
    RECORD   topic, partition, offset, timestamp, key (or none), value, headers
    COMMIT   group, topic, partition, offset, timestamp
    OFFSET   topic, partition, next offset (a checkpoint keeps offsets of emptied partitions)

A segment is `segment-<number>.log`: a checkpoint (every TOPIC, the retained RECORDs, the
OFFSET marks, the COMMITs), then what was appended after it. `describe` summarises a journal
folder (`python -m ecowatt_kernel.bus.admin log`).
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ecowatt_kernel.bus.types import Record

__all__ = [
    "SEGMENT_PREFIX",
    "SEGMENT_SUFFIX",
    "Checkpoint",
    "Commit",
    "Entry",
    "OffsetMark",
    "SegmentRead",
    "TopicEntry",
    "checkpoint_entries",
    "describe",
    "encode_commit",
    "encode_offset",
    "encode_record",
    "encode_topic",
    "read_segment",
]

SEGMENT_PREFIX = "segment-"
SEGMENT_SUFFIX = ".log"
_TOPIC, _RECORD, _COMMIT, _OFFSET = 1, 2, 3, 4
_FRAME = struct.Struct("<II")
_TOPIC_S = struct.Struct("<BHIB")
_RECORD_S = struct.Struct("<BHIqqiIH")
_HEADER_S = struct.Struct("<HI")
_COMMIT_S = struct.Struct("<BHHIqq")
_OFFSET_S = struct.Struct("<BHIq")


@dataclass(frozen=True, slots=True)
class TopicEntry:
    name: str
    partitions: int
    compacted: bool


@dataclass(frozen=True, slots=True)
class Commit:
    group: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class OffsetMark:
    topic: str
    partition: int
    next_offset: int


Entry = TopicEntry | Record | Commit | OffsetMark


def _frame(body: bytes) -> bytes:
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def encode_topic(name: str, partitions: int, compacted: bool) -> bytes:
    raw = name.encode()
    return _frame(_TOPIC_S.pack(_TOPIC, len(raw), partitions, int(compacted)) + raw)


def encode_record(record: Record) -> bytes:
    topic = record.topic.encode()
    key = record.key
    parts = [
        _RECORD_S.pack(
            _RECORD,
            len(topic),
            record.partition,
            record.offset,
            record.timestamp_ms,
            -1 if key is None else len(key),
            len(record.value),
            len(record.headers),
        ),
        topic,
    ]
    if key:
        parts.append(key)
    parts.append(record.value)
    for name, value in record.headers:
        raw = name.encode()
        parts.append(_HEADER_S.pack(len(raw), len(value)))
        parts.append(raw)
        parts.append(value)
    return _frame(b"".join(parts))


def encode_commit(commit: Commit) -> bytes:
    group, topic = commit.group.encode(), commit.topic.encode()
    head = _COMMIT_S.pack(
        _COMMIT, len(group), len(topic), commit.partition, commit.offset, commit.timestamp_ms
    )
    return _frame(head + group + topic)


def encode_offset(mark: OffsetMark) -> bytes:
    topic = mark.topic.encode()
    return _frame(_OFFSET_S.pack(_OFFSET, len(topic), mark.partition, mark.next_offset) + topic)


def _decode(body: bytes | mmap.mmap, start: int) -> Entry:
    kind = body[start]
    if kind == _RECORD:
        _, tlen, partition, offset, ts, klen, vlen, hcount = _RECORD_S.unpack_from(body, start)
        pos = start + _RECORD_S.size
        topic = bytes(body[pos : pos + tlen]).decode()
        pos += tlen
        key = None
        if klen >= 0:
            key = bytes(body[pos : pos + klen])
            pos += klen
        value = bytes(body[pos : pos + vlen])
        pos += vlen
        headers = []
        for _ in range(hcount):
            nlen, hlen = _HEADER_S.unpack_from(body, pos)
            pos += _HEADER_S.size
            name = bytes(body[pos : pos + nlen]).decode()
            pos += nlen
            headers.append((name, bytes(body[pos : pos + hlen])))
            pos += hlen
        return Record(topic, partition, offset, key, value, tuple(headers), ts)
    if kind == _COMMIT:
        _, glen, tlen, partition, offset, ts = _COMMIT_S.unpack_from(body, start)
        pos = start + _COMMIT_S.size
        group = bytes(body[pos : pos + glen]).decode()
        topic = bytes(body[pos + glen : pos + glen + tlen]).decode()
        return Commit(group, topic, partition, offset, ts)
    if kind == _OFFSET:
        _, tlen, partition, next_offset = _OFFSET_S.unpack_from(body, start)
        pos = start + _OFFSET_S.size
        return OffsetMark(bytes(body[pos : pos + tlen]).decode(), partition, next_offset)
    if kind == _TOPIC:
        _, tlen, partitions, compacted = _TOPIC_S.unpack_from(body, start)
        pos = start + _TOPIC_S.size
        return TopicEntry(bytes(body[pos : pos + tlen]).decode(), partitions, bool(compacted))
    raise ValueError(f"unknown entry kind {kind}")


@dataclass
class SegmentRead:
    """What `read_segment` found: the entries and where the good prefix ends."""

    entries: list[Entry] = field(default_factory=list)
    good_bytes: int = 0
    size: int = 0
    problem: str | None = None

    @property
    def torn_bytes(self) -> int:
        return self.size - self.good_bytes


def read_segment(path: Path) -> SegmentRead:
    """Every complete, intact entry of a segment, in order."""
    result = SegmentRead()
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        result.size = size
        if size == 0:
            return result
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            pos = 0
            while pos < size:
                if pos + _FRAME.size > size:
                    result.problem = "a partial entry header"
                    break
                length, crc = _FRAME.unpack_from(data, pos)
                start, end = pos + _FRAME.size, pos + _FRAME.size + length
                if end > size:
                    result.problem = "a partial entry"
                    break
                if zlib.crc32(data[start:end]) != crc:
                    result.problem = "an entry whose checksum does not match"
                    break
                try:
                    result.entries.append(_decode(data, start))
                except (ValueError, struct.error, UnicodeDecodeError) as exc:
                    result.problem = f"an undecodable entry ({exc})"
                    break
                pos = end
            result.good_bytes = pos
    return result


@dataclass
class Checkpoint:
    """The live state a checkpoint writes (taken by the owner between two group commits)."""

    topics: list[TopicEntry]
    offsets: list[OffsetMark]
    records: list[Record]
    commits: list[Commit]


def checkpoint_entries(state: Checkpoint) -> Iterator[bytes]:
    for topic in state.topics:
        yield encode_topic(topic.name, topic.partitions, topic.compacted)
    for record in state.records:
        yield encode_record(record)
    for mark in state.offsets:  # (after the records: recovery skips records below a mark)
        yield encode_offset(mark)
    for commit in state.commits:
        yield encode_commit(commit)


# ------------------------------------------------------------------------------ inspection


def describe(folder: Path, *, topic: str | None = None) -> Iterable[dict[str, object]]:
    """Summary lines of a journal folder (and its records of `topic`, if given)."""
    segments = sorted(folder.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"))
    if not segments:
        yield {"folder": str(folder), "segments": 0}
        return
    read = read_segment(segments[-1])
    records: Counter[str] = Counter()
    groups: dict[str, dict[str, int]] = {}
    for entry in read.entries:
        if isinstance(entry, Record):
            records[entry.topic] += 1
            if topic is not None and entry.topic == topic:
                yield {
                    "topic": entry.topic,
                    "partition": entry.partition,
                    "offset": entry.offset,
                    "timestamp_ms": entry.timestamp_ms,
                    "key": entry.key.decode(errors="replace") if entry.key else None,
                    "value": entry.value.decode(errors="replace"),
                }
        elif isinstance(entry, Commit):
            groups.setdefault(entry.group, {})[f"{entry.topic}/{entry.partition}"] = entry.offset
    yield {
        "folder": str(folder),
        "segment": segments[-1].name,
        "bytes": read.size,
        "torn_bytes": read.torn_bytes,
        "records": dict(sorted(records.items())),
        "groups": len(groups),
    }
