"""Split-packet reassembly: standard parts with their own QNs, order, duplicates, timeouts."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import ecowatt_hj212 as hj212
import pytest
from ecowatt_hj212 import Reason, Reassembler
from hypothesis import given, settings
from hypothesis import strategies as st


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def c50_parts(records: list[dict[str, Any]]) -> list[hj212.Frame]:
    """The standard's C.50 split 2061 upload: two parts, each with its own QN."""
    frames = [hj212.decode(r["frame"]) for r in records if "PNUM=2;PNO=" in r["frame"]]
    assert [f.qn for f in frames] == ["20160801085857534", "20160801085857535"]
    return frames


def test_standard_parts_with_their_own_qns_complete(sample_records: list[dict[str, Any]]) -> None:
    first, second = c50_parts(sample_records)
    reassembler = Reassembler()
    assert reassembler.add(second) is None
    done = reassembler.add(first)
    assert done is not None and done.complete and done.pnum == 2
    assert [p.pno for p in done.parts] == [1, 2]
    assert set(done.codes) == {"w00000", "w01001", "w01018"}
    assert done.items[0] == ("DataTime", "20160801080000")
    assert [k for k, _ in done.items].count("DataTime") == 1
    assert reassembler.open_sets == 0 and reassembler.buffered_bytes == 0


def test_unsplit_frame_is_a_complete_set_of_one(frame_of: Callable[..., bytes]) -> None:
    frame = hj212.decode(frame_of("ST=32;CN=2011;CP=&&a-Rtd=1&&"))
    done = Reassembler().add(frame)
    assert done is not None and done.complete and done.parts == (frame,)


def test_pno_pnum_without_flag_and_with_leading_zeros(frame_of: Callable[..., bytes]) -> None:
    parts = [
        hj212.decode(
            frame_of(f"QN=1;ST=31;CN=2051;MN=M;PNO=000{n};PNUM=0002;CP=&&DataTime=1;a{n}-Avg=1&&")
        )
        for n in (1, 2)
    ]
    reassembler = Reassembler()
    assert reassembler.add(parts[0]) is None
    done = reassembler.add(parts[1])
    assert done is not None and done.complete


def test_duplicates_inside_and_after_a_set(sample_records: list[dict[str, Any]]) -> None:
    first, second = c50_parts(sample_records)
    reassembler = Reassembler()
    assert reassembler.add(first) is None
    assert reassembler.add(first) is None
    done = reassembler.add(second)
    assert done is not None and done.duplicates == 1
    assert reassembler.add(second) is None  # re-sent after completion
    assert reassembler.late_duplicates == 1 and reassembler.open_sets == 0


def test_conflicting_part_keeps_the_first(frame_of: Callable[..., bytes]) -> None:
    def part(pno: int, value: str) -> hj212.Frame:
        return hj212.decode(
            frame_of(
                f"ST=31;CN=2051;MN=M;Flag=6;PNUM=2;PNO={pno};CP=&&DataTime=1;a{pno}-Avg={value}&&"
            )
        )

    reassembler = Reassembler()
    reassembler.add(part(1, "1"))
    reassembler.add(part(1, "9"))
    done = reassembler.add(part(2, "2"))
    assert done is not None and done.conflicts == 1
    assert done.codes["a1"] == {"Avg": "1"}


def test_incomplete_set_expires_with_missing_parts(frame_of: Callable[..., bytes]) -> None:
    clock = FakeClock()
    reassembler = Reassembler(timeout=40, clock=clock)
    part = hj212.decode(
        frame_of("ST=31;CN=2051;MN=M;Flag=6;PNUM=3;PNO=2;CP=&&DataTime=1;a-Avg=1&&")
    )
    reassembler.add(part)
    clock.now = 39.9
    assert reassembler.expire() == []
    clock.now = 40.0
    (expired,) = reassembler.expire()
    assert not expired.complete and expired.reason is Reason.SET_EXPIRED
    assert expired.missing == (1, 3) and expired.parts == (part,)
    assert reassembler.open_sets == 0 and reassembler.buffered_bytes == 0


def test_open_sets_are_bounded(frame_of: Callable[..., bytes]) -> None:
    reassembler = Reassembler(max_open_sets=3)
    for minute in range(10):
        reassembler.add(
            hj212.decode(
                frame_of(f"ST=31;CN=2051;MN=M;Flag=6;PNUM=2;PNO=1;CP=&&DataTime={minute};a-Avg=1&&")
            )
        )
        assert reassembler.open_sets <= 3
    evicted = reassembler.expire()
    assert [s.key[-1] for s in evicted] == [str(m) for m in range(7)]
    assert all(s.reason is Reason.SET_EVICTED for s in evicted)


def test_buffered_bytes_are_bounded(frame_of: Callable[..., bytes]) -> None:
    reassembler = Reassembler(max_buffered_bytes=1000)
    for minute in range(50):
        reassembler.add(
            hj212.decode(
                frame_of(f"ST=31;CN=2051;MN=M;Flag=6;PNUM=2;PNO=1;CP=&&DataTime={minute};a-Avg=1&&")
            )
        )
        assert reassembler.buffered_bytes <= 1000 + 100


@pytest.mark.parametrize("header", ["PNUM=2;PNO=3", "PNUM=0;PNO=0", "PNUM=2", "PNO=1"])
def test_unusable_part_numbers_raise(frame_of: Callable[..., bytes], header: str) -> None:
    frame = hj212.decode(frame_of(f"ST=31;CN=2051;MN=M;{header};CP=&&DataTime=1&&"))
    with pytest.raises(hj212.ReassemblyError) as error:
        Reassembler().add(frame)
    assert error.value.reason is Reason.PART_NUMBER_INVALID


def test_d_bit_without_part_numbers_is_a_noted_single_frame(
    frame_of: Callable[..., bytes],
) -> None:
    frame = hj212.decode(frame_of("ST=31;CN=2051;MN=M;Flag=6;CP=&&DataTime=1&&"))
    assert Reason.PART_NUMBER_MALFORMED in {note.reason for note in frame.notes}
    done = Reassembler().add(frame)
    assert done is not None and done.complete and done.parts == (frame,)


def test_parts_without_datatime_are_keyed_by_qn(frame_of: Callable[..., bytes]) -> None:
    def part(qn: str, pno: int) -> hj212.Frame:
        return hj212.decode(
            frame_of(
                f"QN={qn};ST=31;CN=3020;MN=M;Flag=6;PNUM=2;PNO={pno};CP=&&i11001-Info=//x{pno}//&&"
            )
        )

    reassembler = Reassembler()
    assert reassembler.add(part("A", 1)) is None
    assert reassembler.add(part("B", 2)) is None
    assert reassembler.add(part("A", 2)) is not None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
)
def test_shuffled_and_duplicated_parts_complete_each_set_once(
    frame_of: Callable[..., bytes], sizes: list[int], rng: random.Random
) -> None:
    frames = []
    for set_number, pnum in enumerate(sizes):
        for pno in range(1, pnum + 1):
            frames.append(
                hj212.decode(
                    frame_of(
                        f"QN=2025060100000{set_number:02d}{pno:02d};ST=31;CN=2051;MN=M;Flag=7;"
                        f"PNUM={pnum};PNO={pno};CP=&&DataTime=2025060100{set_number:02d}00;"
                        f"c{pno}-Avg={set_number}&&"
                    )
                )
            )
    stream = frames + rng.sample(frames, k=len(frames) // 2)
    rng.shuffle(stream)
    reassembler = Reassembler()
    completed = [done for frame in stream if (done := reassembler.add(frame)) is not None]
    assert len(completed) == len(sizes)
    for done in completed:
        assert done.complete and [p.pno for p in done.parts] == list(range(1, done.pnum + 1))
        set_numbers = {p.codes[f"c{p.pno}"]["Avg"] for p in done.parts}
        assert len(set_numbers) == 1
    assert reassembler.open_sets == 0 and reassembler.expire() == []
