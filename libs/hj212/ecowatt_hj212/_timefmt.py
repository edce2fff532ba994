"""HJ 212 time stamps: ``YYYYMMDDhhmmss`` (N14) and ``YYYYMMDDhhmmsszzz`` (17 digits, ms)."""

from __future__ import annotations

from datetime import datetime


def parse_hj212_time(text: str) -> datetime | None:
    """Parse a 14- or 17-digit HJ 212 time; ``None`` when it is not one.

    The result is naive: HJ 212 times are the deployment's local time (Asia/Shanghai by
    default), converted to UTC at the platform's edge, not here.
    """
    text = text.strip()
    size = len(text)
    if (size != 14 and size != 17) or not text.isdigit() or not text.isascii():
        return None
    try:
        return datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
            int(text[14:17]) * 1000 if size == 17 else 0,
        )
    except ValueError:
        return None


def format_hj212_time(moment: datetime, *, milliseconds: bool = False) -> str:
    """Format ``moment`` as N14, or as the 17-digit QN form when ``milliseconds``."""
    text = moment.strftime("%Y%m%d%H%M%S")
    if milliseconds:
        text += f"{moment.microsecond // 1000:03d}"
    return text
