"""The root of the library's single exception tree (drawn in the package docstring) and the
errors that carry no frame.

The decode errors (`DecodeError` and below) keep the partial `Frame` and are raised by
`Frame.raise_for_verdict`, so they live beside `Frame` in `_model`: each module then needs
only the one below it (`_model` → `_errors`), never the other way round.
"""

from __future__ import annotations

from ._reasons import Reason


class HJ212Error(Exception):
    """Base of every exception the library raises on bad data.

    ``reason`` is a machine-readable :class:`Reason`; ``str(error)`` explains it.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class EncodeError(HJ212Error):
    """A message cannot be encoded (illegal characters, segment too long)."""


class ReassemblyError(HJ212Error):
    """A split-packet part has unusable PNUM/PNO values."""


class ProfileError(HJ212Error):
    """An electricity profile is unknown or its data is invalid."""
