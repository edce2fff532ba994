"""CRC: the standard's algorithm (vs an independent bitwise reference) and MODBUS."""

from __future__ import annotations

from collections.abc import Callable

from ecowatt_hj212 import hj212_crc, modbus_crc
from ecowatt_hj212._crc import HJ212_POSSIBLE_LOW_BYTES, hj212_crc_over_characters
from hypothesis import given, settings
from hypothesis import strategies as st

APPENDIX_A_SEGMENT = (
    b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
    b"CP=&&RtdInterval=30&&"
)


def test_appendix_a_example_gives_the_printed_crc() -> None:
    assert hj212_crc(APPENDIX_A_SEGMENT) == 0x1C80  # digest §1.1/1.2


def test_modbus_of_the_appendix_a_example_differs() -> None:
    assert modbus_crc(APPENDIX_A_SEGMENT) == 0x0759  # digest §1.1


def test_check_string_values_from_the_peer_survey() -> None:
    assert hj212_crc(b"123456789") == 0x2F80  # peers.md note 4
    assert modbus_crc(b"123456789") == 0x4B37


def test_empty_input_is_the_initial_register() -> None:
    assert hj212_crc(b"") == 0xFFFF


@settings(max_examples=400)
@given(st.binary(max_size=3000))
def test_folded_crc_equals_the_bitwise_reference(
    ref_crc: Callable[[bytes], int], data: bytes
) -> None:
    assert hj212_crc(data) == ref_crc(data)


@given(st.integers(min_value=1, max_value=12_000))
def test_long_inputs_beyond_the_precomputed_lanes(
    ref_crc: Callable[[bytes], int], size: int
) -> None:
    data = bytes((i * 131 + size) & 0xFF for i in range(size))
    assert hj212_crc(data) == ref_crc(data)


@given(st.binary(max_size=600))
def test_modbus_equals_the_bitwise_reference(
    ref_modbus: Callable[[bytes], int], data: bytes
) -> None:
    assert modbus_crc(data) == ref_modbus(data)


@given(st.binary(min_size=1, max_size=300))
def test_low_byte_is_always_one_of_eight_values(data: bytes) -> None:
    assert f"{hj212_crc(data) & 0xFF:02X}" in {"00", "01", "40", "41", "80", "81", "C0", "C1"}
    assert hj212_crc(data) & 0xFF in HJ212_POSSIBLE_LOW_BYTES


@given(st.text(max_size=80))
def test_character_variant_follows_the_loop_over_utf16_units(text: str) -> None:
    units = text.encode("utf-16-be", "surrogatepass")
    register = 0xFFFF
    for i in range(0, len(units), 2):
        register = (register >> 8) ^ ((units[i] << 8) | units[i + 1])
        for _ in range(8):
            register = (register >> 1) ^ 0xA001 if register & 1 else register >> 1
    try:
        computed = hj212_crc_over_characters(text)
    except UnicodeEncodeError:
        return  # lone surrogates never come out of a UTF-8 decode
    assert computed == register


def test_character_variant_equals_byte_crc_for_ascii() -> None:
    assert hj212_crc_over_characters(APPENDIX_A_SEGMENT.decode()) == 0x1C80
