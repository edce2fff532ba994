"""HJ 212 (2005 / 2017 / 2025-provisional) codec: framer, decoder, verifier, encoder,
split-packet reassembler, answers and platform commands, electricity profiles.

Pure Python, no dependencies.  Quick start::

    import ecowatt_hj212 as hj212

    framer = hj212.StreamFramer()
    for event in framer.feed(chunk):
        if isinstance(event, hj212.RawFrame):
            frame = hj212.decode(event.data)
            if frame.ok and frame.ack_requested:
                reply = hj212.encode(hj212.commands.data_answer(frame))

Exceptions
----------
Every exception raised on bad data belongs to one tree; no input, however malformed, raises
anything else.  Errors carry a machine-readable ``reason`` (:class:`Reason`), and decode
errors keep the partial result in ``error.frame``::

    HJ212Error
    ├── DecodeError                 input could not be read as a frame
    │   ├── FrameSyntaxError        no '##' header, or no 'CP=&&' in the segment
    │   └── VerificationError       decoded, but failed a check (strict decoding only)
    │       ├── LengthError         declared length matches neither bytes nor characters
    │       └── CRCError            CRC is neither HJ 212 nor an accepted variant
    ├── EncodeError                 message has illegal characters or is too long
    ├── ReassemblyError             split part with unusable PNUM/PNO
    └── ProfileError                unknown profile, or invalid profile data

Length and CRC failures are not exceptions by default: they are verdicts in
``frame.verification`` (each with a reason code, expected and given values and an
explanation); call ``frame.raise_for_verdict()`` or pass ``strict=True`` to raise them.
"""

from . import commands
from ._codes import CodeInfo, code_from_2005, lookup_code
from ._crc import CrcVariant, hj212_crc, modbus_crc, swap_bytes
from ._decoder import decode
from ._encoder import encode, encode_split, frame_bytes
from ._errors import EncodeError, HJ212Error, ProfileError, ReassemblyError
from ._framer import FramerEvent, RawFrame, RejectedSpan, StreamFramer
from ._model import (
    CRCError,
    CrcPolicy,
    DecodeError,
    Frame,
    FrameSyntaxError,
    LengthError,
    Message,
    Note,
    ProtocolVersion,
    Trailer,
    Verdict,
    Verification,
    VerificationError,
)
from ._profiles import Binding, Profile, Quantity, Reading, get_profile, profile_names
from ._reasons import Reason
from ._reassembler import Reassembler, SplitSet
from ._timefmt import format_hj212_time, parse_hj212_time

__all__ = [
    "Binding",
    "CRCError",
    "CodeInfo",
    "CrcPolicy",
    "CrcVariant",
    "DecodeError",
    "EncodeError",
    "Frame",
    "FrameSyntaxError",
    "FramerEvent",
    "HJ212Error",
    "LengthError",
    "Message",
    "Note",
    "Profile",
    "ProfileError",
    "ProtocolVersion",
    "Quantity",
    "RawFrame",
    "Reading",
    "Reason",
    "Reassembler",
    "ReassemblyError",
    "RejectedSpan",
    "SplitSet",
    "StreamFramer",
    "Trailer",
    "Verdict",
    "Verification",
    "VerificationError",
    "code_from_2005",
    "commands",
    "decode",
    "encode",
    "encode_split",
    "format_hj212_time",
    "frame_bytes",
    "get_profile",
    "hj212_crc",
    "lookup_code",
    "modbus_crc",
    "parse_hj212_time",
    "profile_names",
    "swap_bytes",
]
