"""Encoder: canonical frames, identity with the decoder, errors, split encoding."""

from __future__ import annotations

from collections.abc import Callable

import ecowatt_hj212 as hj212
import pytest
from ecowatt_hj212 import Message, Reason
from hypothesis import given, settings
from hypothesis import strategies as st


def test_frame_layout_byte_length_uppercase_crc_crlf(ref_crc: Callable[[bytes], int]) -> None:
    message = Message(
        cn="2011",
        qn="20250601084500000",
        st="31",
        pw="123456",
        mn="EW0001",
        flag=5,
        cp=(("DataTime", "20250601084500"), ("i11001-Info", "//运行正常//")),
    )
    segment = (
        "QN=20250601084500000;ST=31;CN=2011;PW=123456;MN=EW0001;Flag=5;"
        "CP=&&DataTime=20250601084500;i11001-Info=//运行正常//&&"
    ).encode()
    assert hj212.encode(message) == b"##%04d%s%04X\r\n" % (len(segment), segment, ref_crc(segment))


def test_items_of_one_code_are_grouped_with_commas() -> None:
    message = Message(
        cn="2011",
        cp=(("DataTime", "1"), ("a-Rtd", "1"), ("a-Flag", "N"), ("b-Rtd", "2"), ("EndTime", "3")),
    )
    assert b"CP=&&DataTime=1;a-Rtd=1,a-Flag=N;b-Rtd=2;EndTime=3&&" in hj212.encode(message)


@pytest.mark.parametrize(
    "message",
    [
        Message(cn="2011", mn="A;B"),
        Message(cn="2011", pw=" 123"),
        Message(cn="2011", cp=(("a-Rtd", "1,2"),)),
        Message(cn="2011", cp=(("a-Rtd", " 1"),)),
        Message(cn="2011", cp=(("", "1"),)),
        Message(cn="2011", cp=(("a=b", "1"),)),
        Message(cn="2011", cp=(("i11001-Info", "//unterminated"),)),
        Message(cn="2011", cp=(("i11001-Info", "//a//b//"),)),
        Message(cn="2011", flag=256),
        Message(cn="2011", pno=10000),
    ],
)
def test_illegal_messages_raise_encode_error(message: Message) -> None:
    with pytest.raises(hj212.EncodeError) as error:
        hj212.encode(message)
    assert error.value.reason is Reason.VALUE_ILLEGAL


def test_too_long_raises_segment_too_long() -> None:
    message = Message(cn="2051", cp=tuple((f"a{i:05d}-Avg", "1.0") for i in range(400)))
    with pytest.raises(hj212.EncodeError) as error:
        hj212.encode(message)
    assert error.value.reason is Reason.SEGMENT_TOO_LONG


HEADER_TEXT = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_characters=";,=&\r\n", exclude_categories=("Cs",)
    ),
    max_size=24,
).filter(lambda text: text == text.strip())
VALUE = st.one_of(
    HEADER_TEXT.filter(lambda text: not text.startswith("//")),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/&\r\n"), max_size=30).map(
        lambda text: f"//{text}//"
    ),
)
CODE = st.from_regex(r"[a-zA-Z][a-zA-Z0-9]{0,6}", fullmatch=True)
KEY = st.one_of(
    st.tuples(
        CODE, st.sampled_from(["Rtd", "Avg", "Min", "Max", "Cou", "Flag", "ZsRtd", "Info"])
    ).map("-".join),
    st.sampled_from(
        ["DataTime", "QnRtn", "ExeRtn", "BeginTime", "EndTime", "PolId", "RtdInterval"]
    ),
)
MESSAGES = st.builds(
    Message,
    cn=st.from_regex(r"[0-9]{4}", fullmatch=True),
    st=st.none() | HEADER_TEXT,
    mn=st.none() | HEADER_TEXT,
    pw=st.none() | HEADER_TEXT,
    qn=st.none() | st.from_regex(r"[0-9]{17}", fullmatch=True),
    flag=st.none() | st.integers(0, 255),
    pnum=st.none() | st.integers(0, 9999),
    pno=st.none() | st.integers(0, 9999),
    cp=st.lists(st.tuples(KEY, VALUE), max_size=12).map(tuple),
)


@settings(max_examples=400)
@given(MESSAGES)
def test_decode_of_encode_is_the_identity(message: Message) -> None:
    frame = hj212.decode(hj212.encode(message))
    assert frame.ok
    assert frame.to_message() == message


def _big_minute_message(circuits: int) -> Message:
    items: list[tuple[str, str]] = [("DataTime", "20250601084000")]
    for circuit in range(circuits):
        for suffix in ("Avg", "Min", "Max", "Flag"):
            items.append((f"xe01{circuit:02d}-{suffix}", "N" if suffix == "Flag" else "123.456"))
    return Message(
        cn="2051",
        qn="20250601084512345",
        st="31",
        pw="123456",
        mn="EW0001",
        flag=5,
        cp=tuple(items),
    )


def test_split_encoding_respects_the_limit_and_keeps_groups_whole() -> None:
    message = _big_minute_message(40)
    frames = hj212.encode_split(message, max_segment_size=1024)
    assert len(frames) > 1
    decoded = [hj212.decode(frame, strict=True) for frame in frames]
    for number, frame in enumerate(decoded, start=1):
        assert len(frame.segment) <= 1024
        assert (frame.pnum, frame.pno) == (len(frames), number)
        assert frame.flag == 7 and frame.is_split
        assert frame.params == {"DataTime": "20250601084000"}
        assert all(len(group) == 4 for group in frame.codes.values())
    assert [f.qn for f in decoded] == [f"20250601084512{345 + i}" for i in range(len(frames))]
    coded = [item for frame in decoded for item in frame.items if "-" in item[0]]
    assert coded == [item for item in message.cp if "-" in item[0]]


def test_split_keeps_qn_when_asked() -> None:
    frames = hj212.encode_split(_big_minute_message(40), qn_per_part=False)
    assert {hj212.decode(f).qn for f in frames} == {"20250601084512345"}


def test_split_of_a_small_message_is_one_plain_frame() -> None:
    message = _big_minute_message(2)
    assert hj212.encode_split(message) == [hj212.encode(message)]


def test_split_fails_when_one_group_cannot_fit() -> None:
    message = Message(cn="2051", cp=(("a-Avg", "1" * 2000),))
    with pytest.raises(hj212.EncodeError) as error:
        hj212.encode_split(message, max_segment_size=1024)
    assert error.value.reason is Reason.SEGMENT_TOO_LONG
