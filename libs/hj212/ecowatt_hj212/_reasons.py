"""Machine-readable reason codes shared by verdicts, notes, rejected spans and errors."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a check passed or failed, why a span was rejected, or what was tolerated.

    The values are stable strings meant for logs, metrics and JSON output.
    """

    # length verdicts
    LENGTH_OK = "length_ok"
    LENGTH_OK_CHARACTERS = "length_ok_characters"
    LENGTH_MISMATCH = "length_mismatch"
    LENGTH_FIELD_MALFORMED = "length_field_malformed"
    # CRC verdicts
    CRC_OK = "crc_ok"
    CRC_MODBUS_HI_LO = "crc_modbus_hi_lo"
    CRC_MODBUS_LO_HI = "crc_modbus_lo_hi"
    CRC_OVER_CHARACTERS = "crc_over_characters"
    CRC_MISMATCH = "crc_mismatch"
    CRC_MISSING = "crc_missing"
    CRC_UNCHECKED = "crc_unchecked"
    # framer
    GARBAGE = "garbage"
    LENGTH_EXCEEDS_LIMIT = "length_exceeds_limit"
    FRAME_TRUNCATED = "frame_truncated"
    # frame / segment syntax
    HEADER_MISSING = "header_missing"
    CP_MISSING = "cp_missing"
    # tolerated deviations (notes)
    LEADING_BYTES = "leading_bytes"
    TRAILING_BYTES = "trailing_bytes"
    TRAILER_NONSTANDARD = "trailer_nonstandard"
    CRC_LOWERCASE = "crc_lowercase"
    SEGMENT_OVER_STANDARD_LIMIT = "segment_over_standard_limit"
    TEXT_GB18030 = "text_gb18030"
    TEXT_UNDECODABLE = "text_undecodable"
    HEADER_FIELD_MALFORMED = "header_field_malformed"
    HEADER_FIELD_DUPLICATE = "header_field_duplicate"
    FIELD_MISSING = "field_missing"
    FLAG_MALFORMED = "flag_malformed"
    PART_NUMBER_MALFORMED = "part_number_malformed"
    CP_UNTERMINATED = "cp_unterminated"
    CP_ITEM_MALFORMED = "cp_item_malformed"
    CP_ITEM_DUPLICATE = "cp_item_duplicate"
    CP_PROTECTED_TEXT_UNTERMINATED = "cp_protected_text_unterminated"
    DATATIME_MALFORMED = "datatime_malformed"
    WHITESPACE_TRIMMED = "whitespace_trimmed"
    SUFFIX_EXTRA_DASH = "suffix_extra_dash"
    # reassembly
    PART_NUMBER_INVALID = "part_number_invalid"
    PART_CONFLICT = "part_conflict"
    SET_EXPIRED = "set_expired"
    SET_EVICTED = "set_evicted"
    # encoding
    VALUE_ILLEGAL = "value_illegal"
    SEGMENT_TOO_LONG = "segment_too_long"
    # profiles and code tables
    PROFILE_UNKNOWN = "profile_unknown"
    PROFILE_INVALID = "profile_invalid"
