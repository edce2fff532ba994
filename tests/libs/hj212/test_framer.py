"""Stream framer: chunking, resync, every trailer, limits, bounded memory, exactness."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ecowatt_hj212 as hj212
import pytest
from ecowatt_hj212 import RawFrame, Reason, RejectedSpan, StreamFramer, Trailer
from hypothesis import given, settings
from hypothesis import strategies as st


def run(framer: StreamFramer, data: bytes, cuts: list[int]) -> list[hj212.FramerEvent]:
    events: list[Any] = []
    previous = 0
    for cut in [*sorted(cuts), len(data)]:
        events += framer.feed(data[previous:cut])
        previous = cut
    return events + framer.flush()


def frames_of(events: list[Any]) -> list[bytes]:
    return [event.data for event in events if isinstance(event, RawFrame)]


def test_sample_stream_in_any_chunking(sample_records: list[dict[str, Any]]) -> None:
    frames = [r["frame"].encode() for r in sample_records]
    stream = b"".join(frames)
    expected = [r["frame"].encode() for r in sample_records if r["length_ok"]]
    for size in (1, 5, 64, 1000, len(stream)):
        framer = StreamFramer()
        events = run(framer, stream, list(range(size, len(stream), size)))
        assert frames_of(events) == expected
        assert b"".join(event.data for event in events) == stream
        rejected = [e for e in events if isinstance(e, RejectedSpan)]
        assert [e.reason for e in rejected] == [
            Reason.LENGTH_EXCEEDS_LIMIT,
            Reason.LENGTH_FIELD_MALFORMED,
        ]


def test_offsets_are_stream_positions(frame_of: Callable[..., bytes]) -> None:
    one = frame_of("ST=32;CN=2011;CP=&&a-Rtd=1&&")
    framer = StreamFramer()
    events = framer.feed(b"xyz" + one + one)
    events += framer.flush()
    assert [e.offset for e in events] == [0, 3, 3 + len(one)]


@pytest.mark.parametrize(
    ("trailer", "kind"),
    [
        (b"\r\n", Trailer.CRLF),
        (b"\n", Trailer.LF),
        (b"\r", Trailer.CR),
        (b"\r\r\n", Trailer.CR_CR_LF),
        (b"\\r\\n", Trailer.ESCAPED_TEXT),
        (b"", Trailer.NONE),
    ],
)
def test_each_trailer_between_frames(
    frame_of: Callable[..., bytes], trailer: bytes, kind: Trailer
) -> None:
    first = frame_of("ST=32;CN=2011;CP=&&a-Rtd=1&&", trailer=trailer)
    second = frame_of("ST=32;CN=2011;CP=&&a-Rtd=2&&")
    for cut in range(len(first) + len(second) + 1):
        events = run(StreamFramer(), first + second, [cut])
        assert frames_of(events) == [first, second], cut
        assert events[0].trailer is kind


def test_trailerless_frame_waits_for_flush(frame_of: Callable[..., bytes]) -> None:
    frame = frame_of("ST=32;CN=2011;CP=&&a-Rtd=1&&", trailer=b"")
    framer = StreamFramer()
    assert framer.feed(frame) == []
    assert framer.buffered == len(frame)
    released = framer.flush()
    assert frames_of(released) == [frame] and released[0].trailer is Trailer.NONE


def test_mid_frame_tells_a_frame_still_arriving_from_one_waiting_for_its_trailer(
    frame_of: Callable[..., bytes],
) -> None:
    frame = frame_of("ST=32;CN=2011;CP=&&a-Rtd=1&&", trailer=b"")
    for cut in (2, 4, 6, 20, len(frame) - 1):  # the header or body is still coming
        framer = StreamFramer()
        framer.feed(frame[:cut])
        assert framer.mid_frame, cut
    framer = StreamFramer()
    framer.feed(frame)  # complete, held only for a possible trailer
    assert framer.buffered and not framer.mid_frame
    for held in (b"short garbage", b"##12x4QN", b"##9999QN="):  # no plausible frame start
        framer = StreamFramer(max_segment_size=1024)
        framer.feed(held)
        assert not framer.mid_frame, held


def test_garbage_between_frames_is_one_span(frame_of: Callable[..., bytes]) -> None:
    frame = frame_of("ST=32;CN=2011;CP=&&a-Rtd=1&&")
    garbage = b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x0a#ttp://www.example"
    events = run(StreamFramer(), frame + garbage + frame, list(range(3, 200, 3)))
    assert frames_of(events) == [frame, frame]
    spans = [e for e in events if isinstance(e, RejectedSpan)]
    assert len(spans) == 1 and spans[0].data == garbage and spans[0].reason is Reason.GARBAGE


def test_declared_length_over_the_limit_is_rejected(sample_records: list[dict[str, Any]]) -> None:
    oversized = next(r["frame"] for r in sample_records if r["frame"].startswith("##1623"))
    data = oversized.encode()
    assert frames_of(run(StreamFramer(), data, [])) == [data]
    events = run(StreamFramer(max_segment_size=1024), data, [])
    assert frames_of(events) == []
    assert events[0].reason is Reason.LENGTH_EXCEEDS_LIMIT
    assert b"".join(e.data for e in events) == data


def test_wrong_length_is_rejected_up_to_the_line_end(frame_of: Callable[..., bytes]) -> None:
    good = frame_of("ST=32;CN=2011;CP=&&a-Rtd=1&&")
    bad = b"##0025" + good[6:]
    events = run(StreamFramer(), bad + good, [])
    assert frames_of(events) == [good]
    assert events[0].reason is Reason.LENGTH_MISMATCH and events[0].data == bad


def test_character_counted_length_is_framed(ref_crc: Callable[[bytes], int]) -> None:
    segment = "ST=32;CN=3020;CP=&&i11001-Info=//中文日志//&&"
    body = segment.encode()
    data = b"##%04d" % len(segment) + body + f"{ref_crc(body):04X}\r\n".encode()
    events = run(StreamFramer(), data + data, [7, len(data) + 3])
    assert frames_of(events) == [data, data]


def test_truncated_frame_then_a_full_one(frame_of: Callable[..., bytes]) -> None:
    full = frame_of("QN=20250101000000000;ST=32;CN=2011;CP=&&a01001-Rtd=1,a01001-Flag=N&&")
    truncated = full[:40]
    events = run(StreamFramer(), truncated + full, [20])
    assert frames_of(events) == [full]
    assert events[0].reason is Reason.FRAME_TRUNCATED and events[0].data == truncated


def test_stream_ending_inside_a_frame(frame_of: Callable[..., bytes]) -> None:
    full = frame_of("ST=32;CN=2011;CP=&&a-Rtd=1&&")
    events = run(StreamFramer(), full[:-9], [])
    assert frames_of(events) == [] and events[-1].data == full[:-9]
    assert events[-1].reason in (Reason.FRAME_TRUNCATED, Reason.LENGTH_MISMATCH)


def test_memory_is_bounded_under_garbage_and_huge_declared_frames() -> None:
    framer = StreamFramer(max_segment_size=1024)
    for _ in range(2000):
        framer.feed(b"x" * 500)
        assert framer.buffered <= 1024 + 500
    framer.feed(b"##1024")
    for _ in range(100):
        framer.feed(b"y" * 97)
        assert framer.buffered <= 6 + 1024 + 8 + 1024 + 97


TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="#;,=&\r\n\\"),
    max_size=12,
)
SEGMENTS = st.builds(
    lambda qn, cn, code, value: (
        f"QN={qn};ST=31;CN={cn};CP=&&DataTime=20250101000000;{code}-Rtd={value}&&"
    ),
    st.from_regex(r"[0-9]{17}", fullmatch=True),
    st.sampled_from(["2011", "2051", "9014"]),
    st.from_regex(r"[a-z][0-9]{5}", fullmatch=True),
    TEXT,
)
TRAILERS = st.sampled_from([b"\r\n", b"\n", b"\r\r\n", b"\\r\\n", b""])
GARBAGE = st.binary(max_size=40).map(lambda raw: bytes(b for b in raw if b not in b"#\r\n\\"))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(SEGMENTS, TRAILERS, GARBAGE), min_size=1, max_size=8),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
)
def test_frames_with_garbage_in_random_chunks_come_out_exactly(
    frame_of: Callable[..., bytes],
    parts: list[tuple[str, bytes, bytes]],
    cuts: list[int],
) -> None:
    stream = b""
    expected: list[bytes] = []
    for segment, trailer, garbage in parts:
        if trailer == b"" and garbage[:1] == b"\r":
            trailer = b"\r\n"
        frame = frame_of(segment, trailer=trailer)
        expected.append(frame)
        stream += frame + garbage
    events = run(StreamFramer(), stream, [c for c in cuts if c <= len(stream)])
    assert frames_of(events) == expected
    assert b"".join(e.data for e in events) == stream
    assert all(e.reason is Reason.GARBAGE for e in events if isinstance(e, RejectedSpan))
    assert all(hj212.decode(frame).ok for frame in frames_of(events))
