"""Encode messages into frames (byte lengths, upper-case CRC, CR LF), with splitting."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from ._crc import hj212_crc
from ._errors import EncodeError
from ._model import FLAG_SPLIT, Message
from ._reasons import Reason
from ._timefmt import format_hj212_time, parse_hj212_time

STANDARD_SEGMENT_LIMIT = 1024
_HEADER_FORBIDDEN = (";", ",", "=", "&", "\r", "\n")
_CP_FORBIDDEN = (";", ",", "=", "&", "\r", "\n")


def _check_header(name: str, value: str) -> None:
    if any(ch in value for ch in _HEADER_FORBIDDEN) or value != value.strip():
        raise EncodeError(
            Reason.VALUE_ILLEGAL,
            f"header field {name}={value!r} contains ;,=& or surrounding spaces",
        )


def _check_item(key: str, value: str) -> None:
    if not key or key != key.strip() or "//" in key or any(ch in key for ch in _CP_FORBIDDEN):
        raise EncodeError(Reason.VALUE_ILLEGAL, f"CP key {key!r} is empty or contains ;,=& ")
    if value.startswith("//"):
        inner = value[2:-2]
        if len(value) < 4 or not value.endswith("//") or "//" in inner or "&&" in inner:
            raise EncodeError(
                Reason.VALUE_ILLEGAL, f"CP text of {key} must be //…// without // or &&"
            )
        if "\r" in inner or "\n" in inner:
            raise EncodeError(Reason.VALUE_ILLEGAL, f"CP text of {key} contains a line break")
    elif any(ch in value for ch in _CP_FORBIDDEN) or value != value.strip():
        raise EncodeError(
            Reason.VALUE_ILLEGAL,
            f"CP value {key}={value!r} contains ;,=& or surrounding spaces (wrap text in //…//)",
        )


def _segment_text(message: Message) -> str:
    parts: list[str] = []
    for name, value in (
        ("QN", message.qn),
        ("ST", message.st),
        ("CN", message.cn),
        ("PW", message.pw),
        ("MN", message.mn),
    ):
        if value is not None:
            _check_header(name, value)
            parts.append(f"{name}={value}")
    for name, number in (("Flag", message.flag), ("PNUM", message.pnum), ("PNO", message.pno)):
        if number is not None:
            if not 0 <= number <= (255 if name == "Flag" else 9999):
                raise EncodeError(Reason.VALUE_ILLEGAL, f"{name}={number} is out of range")
            parts.append(f"{name}={number}")
    return ";".join(parts) + ";CP=&&" + _cp_text(message.cp) + "&&"


def _cp_text(items: tuple[tuple[str, str], ...]) -> str:
    pieces: list[str] = []
    previous_code: str | None = None
    for key, value in items:
        _check_item(key, value)
        code = key.partition("-")[0] if "-" in key else None
        if pieces:
            # items of one code form a group joined by ','; groups are joined by ';'
            pieces.append("," if code is not None and code == previous_code else ";")
        pieces.append(f"{key}={value}")
        previous_code = code
    return "".join(pieces)


def frame_bytes(segment: bytes) -> bytes:
    """Wrap a data segment: ``##`` + byte length + segment + upper-case CRC + CR LF."""
    if len(segment) > 9999:
        raise EncodeError(Reason.SEGMENT_TOO_LONG, f"segment of {len(segment)} bytes > 9999")
    return b"##%04d%s%04X\r\n" % (len(segment), segment, hj212_crc(segment))


def encode(message: Message, *, max_segment_size: int = 4096) -> bytes:
    """Encode ``message`` as one frame; :class:`EncodeError` if it is illegal or too long."""
    segment = _segment_text(message).encode("utf-8")
    if len(segment) > max_segment_size:
        raise EncodeError(
            Reason.SEGMENT_TOO_LONG,
            f"data segment of {len(segment)} bytes exceeds {max_segment_size}; use encode_split",
        )
    return frame_bytes(segment)


def encode_split(
    message: Message,
    *,
    max_segment_size: int = STANDARD_SEGMENT_LIMIT,
    qn_per_part: bool = True,
) -> list[bytes]:
    """Encode ``message``, splitting it into PNUM/PNO parts when the segment is too long.

    Each part repeats the items without a code (``DataTime`` …) and carries whole code
    groups, sets the Flag D bit, and (as in the 2017 examples) its own QN: the message's QN
    plus the part index in milliseconds, unless ``qn_per_part`` is false.
    """
    segment = _segment_text(message).encode("utf-8")
    if len(segment) <= max_segment_size:
        return [frame_bytes(segment)]
    common = tuple((k, v) for k, v in message.cp if "-" not in k)
    groups: list[list[tuple[str, str]]] = []
    for key, value in message.cp:
        if "-" not in key:
            continue
        code = key.partition("-")[0]
        if groups and groups[-1][0][0].partition("-")[0] == code:
            groups[-1].append((key, value))
        else:
            groups.append([(key, value)])
    flag = (message.flag or 0) | FLAG_SPLIT
    # size the parts with a 4-digit PNUM/PNO so that the final numbers always fit
    probe = replace(message, flag=flag, pnum=9999, pno=9999, cp=common)
    base = len(_segment_text(probe).encode("utf-8"))
    parts: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    current_size = base
    for group in groups:
        group_size = len(_cp_text(tuple(group)).encode("utf-8")) + 1
        if group_size + base > max_segment_size:
            raise EncodeError(
                Reason.SEGMENT_TOO_LONG,
                f"code group {group[0][0]} alone needs {group_size + base} bytes"
                f" > {max_segment_size}",
            )
        if current and current_size + group_size > max_segment_size:
            parts.append(current)
            current = []
            current_size = base
        current.extend(group)
        current_size += group_size
    if current or not parts:
        parts.append(current)
    qn_time = parse_hj212_time(message.qn) if (qn_per_part and message.qn) else None
    frames = []
    for index, part in enumerate(parts):
        qn = message.qn
        if qn_time is not None and qn is not None and len(qn) == 17:
            qn = format_hj212_time(qn_time + timedelta(milliseconds=index), milliseconds=True)
        part_message = replace(
            message, qn=qn, flag=flag, pnum=len(parts), pno=index + 1, cp=common + tuple(part)
        )
        frames.append(encode(part_message, max_segment_size=max_segment_size))
    return frames
