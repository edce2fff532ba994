"""The pinned public surface and the single exception tree."""

from __future__ import annotations

import ecowatt_hj212 as hj212

PINNED = [
    "Binding", "CRCError", "CodeInfo", "CrcPolicy", "CrcVariant", "DecodeError", "EncodeError",
    "Frame", "FrameSyntaxError", "FramerEvent", "HJ212Error", "LengthError", "Message", "Note",
    "Profile", "ProfileError", "ProtocolVersion", "Quantity", "RawFrame", "Reading", "Reason",
    "Reassembler", "ReassemblyError", "RejectedSpan", "SplitSet", "StreamFramer", "Trailer",
    "Verdict", "Verification", "VerificationError", "code_from_2005", "commands", "decode",
    "encode", "encode_split", "format_hj212_time", "frame_bytes", "get_profile", "hj212_crc",
    "lookup_code", "modbus_crc", "parse_hj212_time", "profile_names", "swap_bytes",
]  # fmt: skip


def test_all_is_pinned() -> None:
    assert hj212.__all__ == PINNED
    assert all(hasattr(hj212, name) for name in PINNED)


def test_exception_tree() -> None:
    tree = {
        hj212.DecodeError: hj212.HJ212Error,
        hj212.FrameSyntaxError: hj212.DecodeError,
        hj212.VerificationError: hj212.DecodeError,
        hj212.LengthError: hj212.VerificationError,
        hj212.CRCError: hj212.VerificationError,
        hj212.EncodeError: hj212.HJ212Error,
        hj212.ReassemblyError: hj212.HJ212Error,
        hj212.ProfileError: hj212.HJ212Error,
    }
    for child, parent in tree.items():
        assert child.__bases__ == (parent,)
    assert hj212.HJ212Error.__bases__ == (Exception,)
    for name in tree:
        assert name.__name__ in (hj212.__doc__ or "")
