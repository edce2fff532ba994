"""Data model: decoded frames, messages to encode, verdicts and notes; the decode errors,
which carry a (partial) frame."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from ._crc import CrcVariant
from ._errors import HJ212Error
from ._reasons import Reason


class Trailer(StrEnum):
    """How a frame ended (the standard says CR LF)."""

    CRLF = "crlf"
    LF = "lf"
    CR = "cr"
    CR_CR_LF = "cr_cr_lf"
    ESCAPED_TEXT = "escaped_text"
    """The four printable characters ``\\r\\n`` (double-escaped by some generators)."""
    NONE = "none"


TRAILER_BYTES: Mapping[Trailer, bytes] = {
    Trailer.CRLF: b"\r\n",
    Trailer.LF: b"\n",
    Trailer.CR: b"\r",
    Trailer.CR_CR_LF: b"\r\r\n",
    Trailer.ESCAPED_TEXT: b"\\r\\n",
    Trailer.NONE: b"",
}


class ProtocolVersion(StrEnum):
    """Protocol edition, from the Flag version bits or, without Flag, from the frame's shape."""

    V2005 = "2005"
    V2017 = "2017"
    V2025 = "2025"
    """Reported, unverified: Flag version bits ``000010`` (HJ 212-2025)."""
    UNKNOWN = "unknown"


#: Flag version bits (bits 7-2, already shifted into place) per edition
VERSION_FLAG_BITS: Mapping[ProtocolVersion, int] = {
    ProtocolVersion.V2005: 0,
    ProtocolVersion.V2017: 4,
    ProtocolVersion.V2025: 8,
}

FLAG_ACK = 0x01
FLAG_SPLIT = 0x02


@dataclass(frozen=True, slots=True)
class Note:
    """A deviation from the standard that was tolerated (or a hint), with a reason code."""

    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """Result of one check (``length`` or ``crc``): pass/fail, reason code, expected vs given."""

    check: str
    ok: bool
    reason: Reason
    expected: str | None = None
    given: str | None = None
    variant: CrcVariant | None = None
    detail: str = ""

    @property
    def explanation(self) -> str:
        """One human sentence: what was expected, what was given, the likely cause."""
        text = _EXPLANATIONS.get(self.reason, "{reason}").format(
            reason=self.reason.value, expected=self.expected, given=self.given
        )
        return f"{text}; {self.detail}" if self.detail else text


_EXPLANATIONS: Mapping[Reason, str] = {
    Reason.LENGTH_OK: "declared length {given} matches the {expected}-byte data segment",
    Reason.LENGTH_OK_CHARACTERS: (
        "declared length {given} matches the segment's character count, not its {expected} bytes"
        " (the sender counted characters; tolerated)"
    ),
    Reason.LENGTH_MISMATCH: "declared length {given}, but the data segment has {expected} bytes",
    Reason.LENGTH_FIELD_MALFORMED: (
        "length field {given!r} is not 4 decimal digits (the segment has {expected} bytes)"
    ),
    Reason.CRC_OK: "CRC {given} matches the HJ 212 CRC {expected}",
    Reason.CRC_MODBUS_HI_LO: (
        "CRC {given} is CRC-16/MODBUS written high byte first, not the HJ 212 CRC {expected}"
        " (device uses the MODBUS algorithm)"
    ),
    Reason.CRC_MODBUS_LO_HI: (
        "CRC {given} is CRC-16/MODBUS written low byte first, not the HJ 212 CRC {expected}"
        " (device uses the MODBUS algorithm in wire order)"
    ),
    Reason.CRC_OVER_CHARACTERS: (
        "CRC {given} was computed over characters, not UTF-8 bytes; the HJ 212 CRC is {expected}"
    ),
    Reason.CRC_MISMATCH: "CRC {given} does not match the HJ 212 CRC {expected}",
    Reason.CRC_MISSING: (
        "no 4-hex-digit CRC after the data segment (HJ 212 CRC would be {expected})"
    ),
    Reason.CRC_UNCHECKED: "CRC {given} not checked because the frame envelope is malformed",
}


@dataclass(frozen=True, slots=True)
class Verification:
    """Both verdicts of a frame and whether its CRC is acceptable for this device."""

    length: Verdict
    crc: Verdict
    crc_accepted: bool
    """True when the CRC is the HJ 212 one or a variant the caller accepts for this device."""

    @property
    def ok(self) -> bool:
        """Length matches and the CRC is accepted."""
        return self.length.ok and self.crc_accepted


@dataclass(frozen=True, slots=True)
class CrcPolicy:
    """Which CRC variants are accepted, by default and per device (MN).

    The standard algorithm is always accepted.  Configure a device that is known to send
    MODBUS CRCs with ``CrcPolicy(per_device={"MN...": {CrcVariant.MODBUS_LO_HI}})``.
    """

    default: frozenset[CrcVariant] = frozenset({CrcVariant.HJ212})
    per_device: Mapping[str, Collection[CrcVariant]] = field(default_factory=dict)

    def accepts(self, variant: CrcVariant | None, mn: str | None) -> bool:
        """Whether a CRC produced by ``variant`` is acceptable from device ``mn``."""
        if variant is None:
            return False
        if variant is CrcVariant.HJ212 or variant in self.default:
            return True
        device = self.per_device.get(mn or "")
        return device is not None and variant in device


DEFAULT_CRC_POLICY = CrcPolicy()


@dataclass(slots=True, eq=False)
class Frame:
    """A decoded frame.  Everything is kept: raw bytes, header fields, CP items, verdicts.

    Values stay strings (devices send ``0``, ``0.000``, marks); map them through a profile.
    """

    raw: bytes
    """The frame exactly as received, trailer included."""
    segment: bytes
    """The data segment bytes (what the length and CRC cover)."""
    text: str
    """The data segment decoded (UTF-8, else GB18030; see ``encoding``)."""
    encoding: str
    trailer: Trailer
    length_field: str
    declared_length: int | None
    crc_field: str | None
    header: dict[str, str]
    """Header fields before ``CP=&&`` in order of appearance (first occurrence wins)."""
    qn: str | None
    st: str | None
    cn: str | None
    pw: str | None
    mn: str | None
    flag: int | None
    pnum: int | None
    pno: int | None
    version: ProtocolVersion
    version_source: str
    """``"flag"`` when read from the Flag version bits, ``"shape"`` when guessed."""
    cp_text: str
    """The CP data area between ``CP=&&`` and the last ``&&``."""
    items: list[tuple[str, str]]
    """Every CP ``key=value`` in order, duplicates included."""
    params: dict[str, str]
    """CP keys without a code (``DataTime``, ``QnRtn``, ``BeginTime`` ...)."""
    codes: dict[str, dict[str, str]]
    """CP items grouped by code: ``codes["a21026"]["Rtd"]``."""
    data_time: datetime | None
    verification: Verification
    notes: list[Note]

    @property
    def ack_requested(self) -> bool:
        """Flag bit A: the receiver must answer (9014 for uploads)."""
        return self.flag is not None and bool(self.flag & FLAG_ACK)

    @property
    def is_split(self) -> bool:
        """Flag bit D, or PNUM/PNO present (some devices omit the D bit)."""
        return (self.flag is not None and bool(self.flag & FLAG_SPLIT)) or (
            self.pnum is not None and self.pno is not None
        )

    @property
    def ok(self) -> bool:
        """Length matches and the CRC is accepted."""
        return self.verification.ok

    def raise_for_verdict(self) -> None:
        """Raise :class:`LengthError` or :class:`CRCError` (carrying this frame) if not ok."""
        verification = self.verification
        if not verification.length.ok:
            raise LengthError(
                verification.length.reason, verification.length.explanation, frame=self
            )
        if not verification.crc_accepted:
            raise CRCError(verification.crc.reason, verification.crc.explanation, frame=self)

    def to_message(self) -> Message:
        """The frame's content as an encodable :class:`Message`."""
        return Message(
            cn=self.cn or "",
            qn=self.qn,
            st=self.st,
            pw=self.pw,
            mn=self.mn,
            flag=self.flag,
            pnum=self.pnum,
            pno=self.pno,
            cp=tuple(self.items),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """What to encode: header fields (``None`` = omitted) and ordered CP items.

    Fields are written in the 2017 order ``QN;ST;CN;PW;MN;Flag;PNUM;PNO;CP``.  CP items are
    ``(key, value)`` pairs; consecutive items of one code are joined with ``,``, the rest
    with ``;``.  Free text must be wrapped in ``//…//``.
    """

    cn: str
    st: str | None = None
    mn: str | None = None
    pw: str | None = None
    qn: str | None = None
    flag: int | None = None
    pnum: int | None = None
    pno: int | None = None
    cp: tuple[tuple[str, str], ...] = ()

    @property
    def params(self) -> dict[str, str]:
        """CP items whose key has no code part."""
        return {key: value for key, value in self.cp if "-" not in key}


# ------------------------------------------------------------------ errors carrying a frame


class DecodeError(HJ212Error):
    """Input could not be read as an HJ 212 frame."""

    def __init__(self, reason: Reason, message: str, *, frame: Frame | None = None) -> None:
        super().__init__(reason, message)
        #: whatever was decoded before the problem (header fields, verdicts), if anything
        self.frame = frame


class FrameSyntaxError(DecodeError):
    """No ``##`` header, or the data segment lacks ``CP=&&``."""


class VerificationError(DecodeError):
    """A frame decoded but failed verification (raised by ``strict`` decoding)."""


class LengthError(VerificationError):
    """The declared length matches neither the byte nor the character count."""


class CRCError(VerificationError):
    """The CRC is not the HJ 212 CRC of the segment, nor an accepted variant."""
