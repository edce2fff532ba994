"""The library's single exception tree (drawn in the package docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._reasons import Reason

if TYPE_CHECKING:
    from ._model import Frame


class HJ212Error(Exception):
    """Base of every exception the library raises on bad data.

    ``reason`` is a machine-readable :class:`Reason`; ``str(error)`` explains it.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


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


class EncodeError(HJ212Error):
    """A message cannot be encoded (illegal characters, segment too long)."""


class ReassemblyError(HJ212Error):
    """A split-packet part has unusable PNUM/PNO values."""


class ProfileError(HJ212Error):
    """An electricity profile is unknown or its data is invalid."""
