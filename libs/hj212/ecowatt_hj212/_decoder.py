"""Decode one frame: envelope, verdicts, header fields, CP items."""

from __future__ import annotations

from itertools import repeat
from operator import contains

from ._crc import (
    HJ212_POSSIBLE_LOW_BYTES,
    CrcVariant,
    hj212_crc,
    hj212_crc_over_characters,
    modbus_crc,
    swap_bytes,
)
from ._model import (
    DEFAULT_CRC_POLICY,
    CrcPolicy,
    Frame,
    FrameSyntaxError,
    Note,
    ProtocolVersion,
    Trailer,
    Verdict,
    Verification,
)
from ._reasons import Reason
from ._timefmt import parse_hj212_time

STANDARD_SEGMENT_LIMIT = 1024
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = frozenset(b"0123456789")
_VERSIONS = (ProtocolVersion.V2005, ProtocolVersion.V2017, ProtocolVersion.V2025)


def split_trailer(frame: bytes) -> tuple[int, Trailer]:
    """Return where the frame body ends and which trailer follows it."""
    if frame.endswith(b"\r\n"):
        if frame.endswith(b"\r\r\n"):
            return len(frame) - 3, Trailer.CR_CR_LF
        return len(frame) - 2, Trailer.CRLF
    if frame.endswith(b"\n"):
        return len(frame) - 1, Trailer.LF
    if frame.endswith(b"\\r\\n"):
        return len(frame) - 4, Trailer.ESCAPED_TEXT
    if frame.endswith(b"\r"):
        return len(frame) - 1, Trailer.CR
    return len(frame), Trailer.NONE


def _is_hex4(field: bytes) -> bool:
    return len(field) == 4 and _HEX.issuperset(field)


def decode(
    data: bytes | bytearray | memoryview | str,
    *,
    crc_policy: CrcPolicy = DEFAULT_CRC_POLICY,
    strict: bool = False,
) -> Frame:
    """Decode one frame (``##`` … CRC, with or without trailer).

    Length and CRC failures are verdicts in ``frame.verification``, not exceptions, unless
    ``strict`` is true (then :class:`LengthError`/:class:`CRCError` carrying the frame).
    Raises :class:`FrameSyntaxError` when there is no ``##`` header, or no ``CP=&&`` (then
    ``error.frame`` holds what was decoded).  Nothing outside :class:`HJ212Error` is raised
    for any ``bytes`` or ``str`` input.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    notes: list[Note] = []
    start = raw.find(b"##")
    if start < 0:
        raise FrameSyntaxError(Reason.HEADER_MISSING, "no '##' frame header in the input")
    if start:
        if raw[:start].strip():
            notes.append(Note(Reason.LEADING_BYTES, f"{start} bytes before '##' ignored"))
        raw = raw[start:]

    body_end, trailer = split_trailer(raw)
    if trailer is not Trailer.CRLF:
        notes.append(
            Note(Reason.TRAILER_NONSTANDARD, f"frame ends with {trailer.value}, not CR LF")
        )

    digits = 0
    while digits < 4 and 2 + digits < body_end and raw[2 + digits] in _DIGITS:
        digits += 1
    seg_start = 2 + digits
    length_field = raw[2:seg_start].decode("ascii")

    crc_field: bytes | None = raw[body_end - 4 : body_end]
    if body_end - 4 >= seg_start and _is_hex4(crc_field or b""):
        seg_end = body_end - 4
    else:
        # the CRC should follow the CP's closing '&&'; anything after it is stray bytes
        close = raw.rfind(b"&&", seg_start, body_end)
        if close >= seg_start and _is_hex4(raw[close + 2 : close + 6]):
            seg_end = close + 2
            crc_field = raw[seg_end : seg_end + 4]
            notes.append(
                Note(Reason.TRAILING_BYTES, f"{body_end - seg_end - 4} bytes after the CRC ignored")
            )
        else:
            seg_end = body_end
            crc_field = None
    segment = raw[seg_start:seg_end]

    try:
        text = segment.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        try:
            text = segment.decode("gb18030")
            encoding = "gb18030"
            notes.append(Note(Reason.TEXT_GB18030, "segment is not UTF-8; decoded as GB18030"))
        except UnicodeDecodeError:
            text = segment.decode("utf-8", "replace")
            encoding = "utf-8-replaced"
            notes.append(
                Note(
                    Reason.TEXT_UNDECODABLE, "segment is neither UTF-8 nor GB18030; raw bytes kept"
                )
            )

    size = len(segment)
    declared: int | None = int(length_field) if digits == 4 else None
    if declared is None:
        length = Verdict("length", False, Reason.LENGTH_FIELD_MALFORMED, str(size), length_field)
    elif declared == size:
        length = Verdict("length", True, Reason.LENGTH_OK, str(size), length_field)
    elif declared == len(text) and encoding == "utf-8":
        length = Verdict("length", True, Reason.LENGTH_OK_CHARACTERS, str(size), length_field)
    else:
        length = Verdict("length", False, Reason.LENGTH_MISMATCH, str(size), length_field)
    if size > STANDARD_SEGMENT_LIMIT:
        notes.append(
            Note(
                Reason.SEGMENT_OVER_STANDARD_LIMIT,
                f"data segment of {size} bytes exceeds the standard's {STANDARD_SEGMENT_LIMIT}"
                " (should have been split)",
            )
        )

    frame = _parse_segment(
        raw, segment, text, encoding, trailer, length_field, declared, crc_field, notes
    )
    expected = hj212_crc(segment)
    crc = _crc_verdict(expected, crc_field, segment, text, declared is None, notes)
    frame.verification = Verification(
        length, crc, length.ok and crc_policy.accepts(crc.variant, frame.mn)
    )
    if frame.cp_text is _NO_CP:
        frame.cp_text = ""
        raise FrameSyntaxError(Reason.CP_MISSING, "data segment has no 'CP=&&'", frame=frame)
    if strict:
        frame.raise_for_verdict()
    return frame


def _crc_verdict(
    expected_value: int,
    crc_field: bytes | None,
    segment: bytes,
    text: str,
    unchecked: bool,
    notes: list[Note],
) -> Verdict:
    expected = f"{expected_value:04X}"
    if crc_field is None:
        return Verdict("crc", False, Reason.CRC_MISSING, expected, None)
    given = crc_field.decode("ascii")
    given_value = int(given, 16)
    if unchecked:
        detail = (
            "taking the bytes after the length field as the segment, the CRC would match"
            if given_value == expected_value
            else f"taking the bytes after the length field as the segment, HJ 212 gives {expected}"
        )
        return Verdict("crc", False, Reason.CRC_UNCHECKED, expected, given, detail=detail)
    if given_value == expected_value:
        if not given.isupper() and not given.isdigit():
            notes.append(Note(Reason.CRC_LOWERCASE, f"CRC {given} written in lower-case hex"))
        return Verdict("crc", True, Reason.CRC_OK, expected, given, CrcVariant.HJ212)
    modbus = modbus_crc(segment)
    if given_value == modbus:
        return Verdict(
            "crc", False, Reason.CRC_MODBUS_HI_LO, expected, given, CrcVariant.MODBUS_HI_LO
        )
    if given_value == swap_bytes(modbus):
        return Verdict(
            "crc", False, Reason.CRC_MODBUS_LO_HI, expected, given, CrcVariant.MODBUS_LO_HI
        )
    if not segment.isascii() and given_value == hj212_crc_over_characters(text):
        return Verdict(
            "crc",
            False,
            Reason.CRC_OVER_CHARACTERS,
            expected,
            given,
            CrcVariant.HJ212_OVER_CHARACTERS,
        )
    if given_value & 0xFF in HJ212_POSSIBLE_LOW_BYTES:
        detail = "likely a stale or copied CRC, or data changed in transit"
    else:
        detail = (
            f"low byte {given_value & 0xFF:02X} is impossible for an HJ 212 CRC:"
            " another algorithm produced it"
        )
    return Verdict("crc", False, Reason.CRC_MISMATCH, expected, given, detail=detail)


_NO_CP = "\x00no-cp\x00"
_PLACEHOLDER_VERDICT = Verdict("crc", False, Reason.CRC_MISSING)
_PLACEHOLDER_VERIFICATION = Verification(_PLACEHOLDER_VERDICT, _PLACEHOLDER_VERDICT, False)


def _parse_segment(
    raw: bytes,
    segment: bytes,
    text: str,
    encoding: str,
    trailer: Trailer,
    length_field: str,
    declared: int | None,
    crc_field: bytes | None,
    notes: list[Note],
) -> Frame:
    cp_at = text.find("CP=&&")
    header_text = text if cp_at < 0 else text[:cp_at]
    header = _parse_header(header_text, notes)
    get = header.get

    flag = _small_int(get("Flag"), "Flag", 255, Reason.FLAG_MALFORMED, notes)
    pnum = _small_int(get("PNUM"), "PNUM", 9999, Reason.PART_NUMBER_MALFORMED, notes)
    pno = _small_int(get("PNO"), "PNO", 9999, Reason.PART_NUMBER_MALFORMED, notes)
    if flag is not None and flag & 2 and (pnum is None or pno is None):
        notes.append(Note(Reason.PART_NUMBER_MALFORMED, "Flag D bit set without PNUM and PNO"))
    if flag is not None:
        bits = flag >> 2
        version = _VERSIONS[bits] if bits < 3 else ProtocolVersion.UNKNOWN
        source = "flag"
    else:
        version = ProtocolVersion.V2017 if "QN" in header else ProtocolVersion.V2005
        source = "shape"
    cn = get("CN")
    if cn is None:
        notes.append(Note(Reason.FIELD_MISSING, "no CN field"))

    items: list[tuple[str, str]] = []
    params: dict[str, str] = {}
    codes: dict[str, dict[str, str]] = {}
    data_time = None
    if cp_at < 0:
        cp_text = _NO_CP
    else:
        close = text.rfind("&&")
        if close < cp_at + 5:
            cp_text = text[cp_at + 5 :]
            notes.append(Note(Reason.CP_UNTERMINATED, "CP data area has no closing '&&'"))
        else:
            cp_text = text[cp_at + 5 : close]
            if text[close + 2 :].strip():
                notes.append(Note(Reason.TRAILING_BYTES, "text after the closing '&&' ignored"))
        items = _parse_cp(cp_text, params, codes, notes)
        moment_text = params.get("DataTime")
        if moment_text is not None:
            data_time = parse_hj212_time(moment_text)
            if data_time is None:
                notes.append(
                    Note(Reason.DATATIME_MALFORMED, f"DataTime {moment_text!r} is not a time")
                )
    return Frame(
        raw=raw,
        segment=segment,
        text=text,
        encoding=encoding,
        trailer=trailer,
        length_field=length_field,
        declared_length=declared,
        crc_field=None if crc_field is None else crc_field.decode("ascii"),
        header=header,
        qn=get("QN"),
        st=get("ST"),
        cn=cn,
        pw=get("PW"),
        mn=get("MN"),
        flag=flag,
        pnum=pnum,
        pno=pno,
        version=version,
        version_source=source,
        cp_text=cp_text,
        items=items,
        params=params,
        codes=codes,
        data_time=data_time,
        verification=_PLACEHOLDER_VERIFICATION,
        notes=notes,
    )


def _parse_header(header_text: str, notes: list[Note]) -> dict[str, str]:
    header: dict[str, str] = {}
    if "," in header_text:  # the standard's own C.22 writes 'QN=…,ST=32'
        header_text = header_text.replace(",", ";")
    trim = " " in header_text or "\t" in header_text
    for part in header_text.split(";"):
        key, sep, value = part.partition("=")
        if trim:
            key = key.strip()
            value = value.strip()
        if not sep:
            if key.strip():
                notes.append(
                    Note(Reason.HEADER_FIELD_MALFORMED, f"header part {part!r} has no '='")
                )
            continue
        if key in header:
            notes.append(Note(Reason.HEADER_FIELD_DUPLICATE, f"header field {key} repeated"))
            continue
        header[key] = value
    return header


def _small_int(
    value: str | None, name: str, limit: int, reason: Reason, notes: list[Note]
) -> int | None:
    if value is None:
        return None
    if value.isdigit() and value.isascii() and len(value) <= 5 and int(value) <= limit:
        return int(value)
    notes.append(Note(reason, f"{name}={value!r} is not an integer 0..{limit}"))
    return None


def _parse_cp(
    body: str,
    params: dict[str, str],
    codes: dict[str, dict[str, str]],
    notes: list[Note],
) -> list[tuple[str, str]]:
    """Fill ``params``/``codes`` and return every item in order."""
    if not body:
        return []
    if "//" not in body and " " not in body and "\t" not in body and "--" not in body:
        # fast path for well-formed CP (every ';'/','-separated token holds exactly one
        # '=' and a key): string splits in C instead of a regex; any doubt falls through
        # to the careful path below, which also writes the notes
        norm = body.replace(",", ";") if "," in body else body
        tokens = norm.split(";")
        count = len(tokens)
        if body.count("=") == count and all(map(contains, tokens, repeat("="))):
            flat = norm.replace("=", ";").split(";")
            keys = flat[0::2]
            if "" not in keys:
                values = flat[1::2]
                for key, value in zip(keys, values, strict=True):
                    code, dash, suffix = key.partition("-")
                    if dash:
                        group = codes.get(code)
                        if group is None:
                            codes[code] = {suffix: value}
                        else:
                            group[suffix] = value
                    else:
                        params[key] = value
                if len(params) + sum(map(len, codes.values())) == count:
                    return list(zip(keys, values, strict=True))
                params.clear()  # a repeated key: redo carefully to note it
                codes.clear()
    items: list[tuple[str, str]] = []
    if "//" in body:
        pairs = _split_protected(body, notes)
    else:
        pairs = []
        append = pairs.append
        # ';' separates groups and ',' items, but devices mix them up: treat both alike
        for token in body.replace(",", ";").split(";"):
            key, sep, value = token.partition("=")
            if sep:
                append((key, value))
            elif token.strip():
                notes.append(Note(Reason.CP_ITEM_MALFORMED, f"CP token {token!r} has no '='"))
    trim = " " in body or "\t" in body
    if trim:
        notes.append(Note(Reason.WHITESPACE_TRIMMED, "spaces around CP keys/values trimmed"))
    for key, value in pairs:
        if trim:
            key = key.strip()
            value = value if value.startswith("//") else value.strip()
        if not key:
            notes.append(
                Note(Reason.CP_ITEM_MALFORMED, f"CP item with empty key (value {value!r})")
            )
            continue
        items.append((key, value))
        code, dash, suffix = key.partition("-")
        if dash:
            if suffix.startswith("-"):
                notes.append(Note(Reason.SUFFIX_EXTRA_DASH, f"key {key!r} has an extra '-'"))
                suffix = suffix.lstrip("-")
            group = codes.get(code)
            if group is None:
                codes[code] = {suffix: value}
            else:
                if suffix in group:
                    notes.append(Note(Reason.CP_ITEM_DUPLICATE, f"{key} repeated; last kept"))
                group[suffix] = value
        else:
            if key in params:
                notes.append(Note(Reason.CP_ITEM_DUPLICATE, f"{key} repeated; last kept"))
            params[key] = value
    return items


def _split_protected(body: str, notes: list[Note]) -> list[tuple[str, str]]:
    """Split ``key=value`` pairs where values may be ``//…//`` text containing separators."""
    pairs: list[tuple[str, str]] = []
    pos = 0
    end = len(body)
    while pos < end:
        eq = body.find("=", pos)
        stop = _next_separator(body, pos)
        if eq < 0 or eq > stop:
            token = body[pos:stop]
            if token.strip():
                notes.append(Note(Reason.CP_ITEM_MALFORMED, f"CP token {token!r} has no '='"))
            pos = stop + 1
            continue
        key = body[pos:eq]
        value_start = eq + 1
        lead = value_start
        while lead < end and body[lead] == " ":
            lead += 1
        if body.startswith("//", lead):
            close = body.find("//", lead + 2)
            if close < 0:
                notes.append(
                    Note(
                        Reason.CP_PROTECTED_TEXT_UNTERMINATED,
                        f"text of {key.strip()!r} has no closing '//'",
                    )
                )
                pairs.append((key, body[lead:]))
                break
            pairs.append((key, body[lead : close + 2]))
            stop = _next_separator(body, close + 2)
            if body[close + 2 : stop].strip():
                notes.append(Note(Reason.CP_ITEM_MALFORMED, f"text after '//' of {key.strip()!r}"))
        else:
            pairs.append((key, body[value_start:stop]))
        pos = stop + 1
    return pairs


def _next_separator(body: str, pos: int) -> int:
    semi = body.find(";", pos)
    comma = body.find(",", pos)
    if semi < 0:
        return comma if comma >= 0 else len(body)
    if comma < 0:
        return semi
    return min(semi, comma)
