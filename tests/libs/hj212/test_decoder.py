"""Decoder: the shared sample frames' verdicts, worked examples, and every tolerated quirk."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import ecowatt_hj212 as hj212
import pytest
from ecowatt_hj212 import CrcPolicy, CrcVariant, ProtocolVersion, Reason, Trailer

MN = "010000A8900016F000169DC0"


def note_reasons(frame: hj212.Frame) -> set[Reason]:
    return {note.reason for note in frame.notes}


def decode_any(data: bytes | str) -> hj212.Frame:
    """The frame, also when decoding raised (its partial result)."""
    try:
        return hj212.decode(data)
    except hj212.DecodeError as error:
        assert error.frame is not None
        return error.frame


def test_sample_frame_verdicts_match_the_file(sample_record: dict[str, Any]) -> None:
    frame = decode_any(sample_record["frame"])
    assert frame.verification.length.ok is sample_record["length_ok"]
    assert frame.verification.crc.ok is sample_record["crc_ok"]
    assert frame.cn == sample_record["cn"]
    assert frame.raw == sample_record["frame"].encode("utf-8")


def test_sample_frame_versions_match_where_the_file_is_certain(
    sample_record: dict[str, Any],
) -> None:
    expected = sample_record["version"]
    detected = decode_any(sample_record["frame"]).version.value
    if "?" in expected:
        # The file is unsure (e.g. Flag=8 in a 2021 sample reads as 2025 by its bits, §2.2):
        # only require one of the editions the codec knows.
        assert detected in {"2005", "2017", "2025", "unknown"}
    else:
        assert detected == expected


def test_sample_crc_failures_name_the_variant_the_file_names(
    sample_record: dict[str, Any],
) -> None:
    note = sample_record["note"]
    verdict = decode_any(sample_record["frame"]).verification.crc
    if "MODBUS (high byte first)" in note:
        assert verdict.variant is CrcVariant.MODBUS_HI_LO
        assert verdict.reason is Reason.CRC_MODBUS_HI_LO
    elif "MODBUS with bytes swapped" in note:
        assert verdict.variant is CrcVariant.MODBUS_LO_HI
    elif "CRC mismatch (given" in note:
        given, expected = note.split("CRC mismatch (given ")[1].split(", HJ212 algorithm gives ")
        assert verdict.reason is Reason.CRC_MISMATCH
        assert verdict.given == given
        assert verdict.expected == expected.rstrip(")")
    else:
        assert verdict.variant in (CrcVariant.HJ212, None)


# The digest's table 1.2 frames (verified examples); all but the last are in canonical form.
WORKED_EXAMPLES = [
    (
        "##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;"
        "Flag=5;CP=&&RtdInterval=30&&1C80\r\n"
    ),
    (
        "##0094QN=20231008125115215;ST=22;CN=9011;PW=123456;MN=010000A8900016F000169DC0;"
        "Flag=4;CP=&&QnRtn=1&&CC01\r\n"
    ),
    (
        "##0137QN=20231008130452757;ST=22;CN=2081;PW=123456;MN=010000A8900016F000169DC0;"
        "Flag=5;CP=&&DataTime=20231008130452;RestartTime=20231007130452&&3AC0\r\n"
    ),
    (
        "##0144ST=31;CN=2021;PW=123456;MN=ZG130102201666;CP=&&DataTime=20180119131000;"
        "SB1-RS=0;SB2-RS=0;SB3-RS=0;SB4-RS=0;SB5-RS=0;SB6-RS=0;SB7-RS=0;SB8-RS=0&&CAC1\r\n"
    ),
    (
        "##0285QN=20190925181031464;ST=22;CN=2061;PW=BF470F88957588DE902D1A52;"
        "MN=Z13401000010301;Flag=5;CP=&&DataTime=20190924220000;a34006-Avg=2.69700,"
        "a34006-Flag=N;a34007-Avg=7.96600,a34007-Flag=N;a34048-Avg=3.30600,a34048-Flag=N;"
        "a34047-Avg=7.35700,a34047-Flag=N;a34049-Avg=10.66300,a34049-Flag=N&&C181\r\n"
    ),
    (
        "##0234ST=101;CN=2011;PW=123456;MN=41050022000017;CP=&&DataTime=20200922110000;"
        "a34010-Rtd=2.017,a34010-Flag=N;a34009-Rtd=0.522,a34009-Flag=N;ua19004-Rtd=2.017,"
        "ua19004-Flag=N;ua19005-Rtd=0.522,ua19005-Flag=N;ua19003-Rtd=2.539,ua19003-Flag=N&&3300\r\n"
    ),
]
SPLIT_EXAMPLE = (
    "##0204QN=20191112091100598;ST=31;CN=2051;PW=123456;MN=14513567846884;PNO=0002;PNUM=0002;"
    "CP=&&DataTime=20191112090000;a01006-Avg=101.85,a01006-Min=101.84,a01006-Max=101.87,"
    "a01006-ValidNum=10,a01006-TotalNum=10&&2800\r\n"
)


@pytest.mark.parametrize("text", WORKED_EXAMPLES)
def test_worked_examples_verify_and_round_trip_byte_for_byte(text: str) -> None:
    frame = hj212.decode(text, strict=True)
    assert frame.ok
    assert hj212.encode(frame.to_message()) == text.encode()


def test_split_example_round_trips_as_a_message() -> None:
    frame = hj212.decode(SPLIT_EXAMPLE, strict=True)
    assert (frame.pnum, frame.pno, frame.flag) == (2, 2, None)
    assert frame.is_split
    again = hj212.decode(hj212.encode(frame.to_message()))
    assert again.to_message() == frame.to_message()


def test_header_fields_flag_bits_and_items() -> None:
    frame = hj212.decode(WORKED_EXAMPLES[4])
    assert (frame.qn, frame.st, frame.cn, frame.mn) == (
        "20190925181031464",
        "22",
        "2061",
        "Z13401000010301",
    )
    assert frame.pw == "BF470F88957588DE902D1A52"
    assert frame.flag == 5 and frame.ack_requested and not frame.is_split
    assert frame.version is ProtocolVersion.V2017 and frame.version_source == "flag"
    assert frame.data_time == datetime(2019, 9, 24, 22, 0, 0)
    assert frame.codes["a34049"] == {"Avg": "10.66300", "Flag": "N"}
    assert frame.params == {"DataTime": "20190924220000"}
    assert len(frame.items) == 11
    assert frame.trailer is Trailer.CRLF and frame.notes == []


def test_2005_shape_without_qn_or_flag() -> None:
    frame = hj212.decode(WORKED_EXAMPLES[3])
    assert frame.version is ProtocolVersion.V2005 and frame.version_source == "shape"
    assert frame.qn is None and frame.flag is None and not frame.ack_requested
    assert frame.codes["SB8"] == {"RS": "0"}


@pytest.mark.parametrize(
    ("flag", "version"),
    [
        (0, "2005"),
        (3, "2005"),
        (4, "2017"),
        (7, "2017"),
        (8, "2025"),
        (11, "2025"),
        (12, "unknown"),
    ],
)
def test_version_from_flag_bits(frame_of: Callable[..., bytes], flag: int, version: str) -> None:
    frame = hj212.decode(frame_of(f"QN=20250101000000000;ST=31;CN=2011;Flag={flag};CP=&&&&"))
    assert frame.version.value == version
    assert frame.ack_requested is bool(flag & 1)
    assert frame.is_split is bool(flag & 2)


@pytest.mark.parametrize(
    ("trailer", "kind"),
    [
        (b"\r\n", Trailer.CRLF),
        (b"\n", Trailer.LF),
        (b"", Trailer.NONE),
        (b"\\r\\n", Trailer.ESCAPED_TEXT),
        (b"\r\r\n", Trailer.CR_CR_LF),
        (b"\r", Trailer.CR),
    ],
)
def test_every_trailer_variant_verifies(
    frame_of: Callable[..., bytes], trailer: bytes, kind: Trailer
) -> None:
    frame = hj212.decode(frame_of("ST=32;CN=2011;CP=&&a01-Rtd=1&&", trailer=trailer))
    assert frame.ok and frame.trailer is kind
    assert (Reason.TRAILER_NONSTANDARD in note_reasons(frame)) is (kind is not Trailer.CRLF)


def test_lowercase_crc_is_accepted_and_noted(frame_of: Callable[..., bytes]) -> None:
    # Pick a value whose CRC has hex letters, so that lower-casing changes it.
    upper = next(
        f
        for v in range(100)
        if not (f := frame_of(f"ST=32;CN=2011;CP=&&a01-Rtd={v}&&"))[-6:-2].isdigit()
    )
    lower = upper[:-6] + upper[-6:-2].lower() + b"\r\n"
    assert lower != upper
    frame = hj212.decode(lower)
    assert frame.verification.crc.ok
    assert Reason.CRC_LOWERCASE in note_reasons(frame)


def test_modbus_crc_is_named_and_accepted_only_for_the_configured_device(
    frame_of: Callable[..., bytes], ref_modbus: Callable[[bytes], int]
) -> None:
    segment = f"ST=32;CN=2011;MN={MN};CP=&&a01-Rtd=1&&"
    value = ref_modbus(segment.encode())
    swapped = f"{value & 0xFF:02X}{value >> 8:02X}"
    data = frame_of(segment, crc=swapped)
    frame = hj212.decode(data)
    assert frame.verification.crc.variant is CrcVariant.MODBUS_LO_HI
    assert not frame.ok
    assert "low byte first" in frame.verification.crc.explanation
    policy = CrcPolicy(per_device={MN: {CrcVariant.MODBUS_LO_HI}})
    assert hj212.decode(data, crc_policy=policy).ok
    other = CrcPolicy(per_device={"SOMEONE-ELSE": {CrcVariant.MODBUS_LO_HI}})
    assert not hj212.decode(data, crc_policy=other).ok
    high_first = frame_of(segment, crc=f"{value:04X}")
    assert hj212.decode(high_first).verification.crc.variant is CrcVariant.MODBUS_HI_LO


def test_mismatch_explains_expected_given_and_impossible_low_byte(
    frame_of: Callable[..., bytes], ref_crc: Callable[[bytes], int]
) -> None:
    segment = "ST=32;CN=2011;CP=&&a01-Rtd=1&&"
    frame = hj212.decode(frame_of(segment, crc="12EF"))
    verdict = frame.verification.crc
    assert verdict.reason is Reason.CRC_MISMATCH and verdict.given == "12EF"
    assert verdict.expected == f"{ref_crc(segment.encode()):04X}"
    assert "EF is impossible" in verdict.explanation


def test_strict_decoding_raises_with_the_frame_attached(frame_of: Callable[..., bytes]) -> None:
    bad_crc = frame_of("ST=32;CN=2011;CP=&&a01-Rtd=1&&", crc="0000")
    with pytest.raises(hj212.CRCError) as crc_error:
        hj212.decode(bad_crc, strict=True)
    assert crc_error.value.frame is not None and crc_error.value.frame.cn == "2011"
    bad_length = b"##0099" + bad_crc[6:]
    with pytest.raises(hj212.LengthError) as length_error:
        hj212.decode(bad_length, strict=True)
    assert length_error.value.reason is Reason.LENGTH_MISMATCH
    assert isinstance(length_error.value, hj212.VerificationError)


def test_character_counted_length_is_accepted(ref_crc: Callable[[bytes], int]) -> None:
    segment = (
        "QN=20160801085857223;ST=32;CN=3020;CP=&&DataTime=20160801085857;i11001-Info=//日志//&&"
    )
    body = segment.encode()
    data = b"##%04d" % len(segment) + body + f"{ref_crc(body):04X}\r\n".encode()
    frame = hj212.decode(data)
    assert frame.verification.length.ok
    assert frame.verification.length.reason is Reason.LENGTH_OK_CHARACTERS
    assert frame.params["DataTime"] == "20160801085857"
    assert frame.codes["i11001"]["Info"] == "//日志//"


def test_crc_over_characters_is_recognised() -> None:
    segment = "ST=32;CN=3020;CP=&&i11001-Info=//运行正常//&&"
    units = segment.encode("utf-16-be")
    register = 0xFFFF
    for i in range(0, len(units), 2):
        register = (register >> 8) ^ ((units[i] << 8) | units[i + 1])
        for _ in range(8):
            register = (register >> 1) ^ 0xA001 if register & 1 else register >> 1
    body = segment.encode()
    frame = hj212.decode(b"##%04d" % len(body) + body + f"{register:04X}\r\n".encode())
    assert frame.verification.crc.variant is CrcVariant.HJ212_OVER_CHARACTERS


def test_gb18030_fallback_keeps_raw_bytes(frame_of: Callable[..., bytes]) -> None:
    body = "ST=32;CN=3020;CP=&&i11001-Info=//设备故障//&&".encode("gb18030")
    data = frame_of(body)
    frame = hj212.decode(data)
    assert frame.encoding == "gb18030" and frame.ok
    assert frame.codes["i11001"]["Info"] == "//设备故障//"
    assert frame.raw == data and frame.segment == body
    assert Reason.TEXT_GB18030 in note_reasons(frame)


def test_undecodable_text_is_replaced_but_raw_kept(frame_of: Callable[..., bytes]) -> None:
    body = b"ST=32;CN=3020;CP=&&i11001-Info=//\xff\xff\xff//&&"
    frame = hj212.decode(frame_of(body))
    assert frame.encoding == "utf-8-replaced" and frame.segment == body
    assert Reason.TEXT_UNDECODABLE in note_reasons(frame)


def test_protected_text_may_contain_separators(frame_of: Callable[..., bytes]) -> None:
    segment = "ST=32;CN=3020;CP=&&DataTime=20160801085857;i11001-Info=//a=1;b,c//;a01-Rtd=2&&"
    frame = hj212.decode(frame_of(segment))
    assert frame.codes["i11001"]["Info"] == "//a=1;b,c//"
    assert frame.codes["a01"] == {"Rtd": "2"}


def test_unterminated_protected_text_is_noted(frame_of: Callable[..., bytes]) -> None:
    frame = hj212.decode(frame_of("ST=32;CN=3020;CP=&&i11001-Info=//abc;x=1&&"))
    assert Reason.CP_PROTECTED_TEXT_UNTERMINATED in note_reasons(frame)
    assert frame.codes["i11001"]["Info"] == "//abc;x=1"


def test_standard_typos_are_tolerated(frame_of: Callable[..., bytes]) -> None:
    # C.22 comma in the header, C.19 missing ';' before CP, C.16 double dash, C.4 stray space
    segment = (
        "QN=20160801085857534,ST=32;CN=2051;PW=123456;MN=X;Flag=5"
        "CP=&& w01018--Avg=1 ,i12003-Info =0&&"
    )
    frame = hj212.decode(frame_of(segment))
    assert frame.ok
    assert (frame.qn, frame.st, frame.flag) == ("20160801085857534", "32", 5)
    assert frame.codes["w01018"] == {"Avg": "1"}
    assert frame.codes["i12003"] == {"Info": "0"}
    assert {Reason.SUFFIX_EXTRA_DASH, Reason.WHITESPACE_TRIMMED} <= note_reasons(frame)


def test_mixed_separators_duplicates_and_standalone_flag(frame_of: Callable[..., bytes]) -> None:
    segment = (
        "ST=39;CN=2011;CP=&&a01001-Avg=7.2,a01001-Max=9.70;a01001-Min=2.3;Flag=N;a01001-Avg=8&&"
    )
    frame = hj212.decode(frame_of(segment))
    assert frame.codes["a01001"] == {"Avg": "8", "Max": "9.70", "Min": "2.3"}
    assert frame.params["Flag"] == "N"
    assert [k for k, _ in frame.items].count("a01001-Avg") == 2
    assert Reason.CP_ITEM_DUPLICATE in note_reasons(frame)


def test_last_ampersands_close_cp(frame_of: Callable[..., bytes]) -> None:
    frame = hj212.decode(frame_of("ST=32;CN=1013;CP=&&&&"))
    assert frame.items == [] and frame.cp_text == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20160824003817", datetime(2016, 8, 24, 0, 38, 17)),
        ("20160824003817123", datetime(2016, 8, 24, 0, 38, 17, 123000)),
    ],
)
def test_datatime_with_14_or_17_digits(
    frame_of: Callable[..., bytes], value: str, expected: datetime
) -> None:
    frame = hj212.decode(frame_of(f"ST=32;CN=2011;CP=&&DataTime={value}&&"))
    assert frame.data_time == expected


@pytest.mark.parametrize("value", ["2016082400381", "20161324003817", "2016O824003817", ""])
def test_malformed_datatime_is_noted(frame_of: Callable[..., bytes], value: str) -> None:
    frame = hj212.decode(frame_of(f"ST=32;CN=2011;CP=&&DataTime={value}&&"))
    assert frame.data_time is None
    assert Reason.DATATIME_MALFORMED in note_reasons(frame)


def test_malformed_numbers_in_header_are_noted(frame_of: Callable[..., bytes]) -> None:
    frame = hj212.decode(frame_of("ST=32;CN=2011;Flag=x;PNUM=;PNO=-1;CP=&&&&"))
    assert frame.flag is None and frame.pnum is None and frame.pno is None
    assert {Reason.FLAG_MALFORMED, Reason.PART_NUMBER_MALFORMED} <= note_reasons(frame)


def test_no_header_raises_frame_syntax_error() -> None:
    with pytest.raises(hj212.FrameSyntaxError) as error:
        hj212.decode("QN=1;ST=32;CP=&&&&1C80\r\n")
    assert error.value.reason is Reason.HEADER_MISSING and error.value.frame is None


def test_missing_cp_raises_but_keeps_the_partial_frame(frame_of: Callable[..., bytes]) -> None:
    with pytest.raises(hj212.FrameSyntaxError) as error:
        hj212.decode(frame_of("QN=20160801085857223;ST=32;CN=2011;MN=ABC"))
    partial = error.value.frame
    assert error.value.reason is Reason.CP_MISSING
    assert partial is not None and partial.mn == "ABC" and partial.verification.crc.ok


def test_malformed_length_field_leaves_crc_unchecked(sample_records: list[dict[str, Any]]) -> None:
    record = next(r for r in sample_records if r["frame"].startswith("##81"))
    frame = hj212.decode(record["frame"])
    assert frame.verification.length.reason is Reason.LENGTH_FIELD_MALFORMED
    assert frame.verification.crc.reason is Reason.CRC_UNCHECKED
    assert "would match" in frame.verification.crc.explanation
    assert frame.cn == "1012" and frame.qn == ""


def test_stray_bytes_after_crc_and_before_header(frame_of: Callable[..., bytes]) -> None:
    data = b"  xx" + frame_of("ST=32;CN=2011;CP=&&a01-Rtd=1&&", trailer=b"junk")
    frame = hj212.decode(data)
    assert frame.ok
    assert {Reason.LEADING_BYTES, Reason.TRAILING_BYTES} <= note_reasons(frame)


def test_missing_crc_is_a_verdict(frame_of: Callable[..., bytes]) -> None:
    frame = hj212.decode(b"##0030ST=32;CN=2011;CP=&&a01-Rtd=1&&\r\n")
    assert frame.verification.crc.reason is Reason.CRC_MISSING and not frame.ok
    assert frame.codes == {"a01": {"Rtd": "1"}}
