"""Fast assembly of the device's own uploads.

The codec's `encode` validates every CP item, which is right for arbitrary messages and
costs most of the simulator's time at load-test rates. Uploads built here contain only keys
and numbers the simulator formats itself, so they are assembled from pre-joined code groups
(`"xe0101-Rtd=41.27,xe0101-Flag=N"`) and framed with the codec's CRC. Tests decode every
frame with the codec, so this path is checked against it.

Splitting follows HJ 212-2017 §4 like `ecowatt_hj212.encode_split`: every part repeats the
items without a code (`DataTime`), carries whole code groups, sets the D bit and has its own
QN (the base QN plus the part index in milliseconds).
"""

from __future__ import annotations

from ecowatt_hj212 import hj212_crc

__all__ = ["frame_bytes", "header", "pack_groups"]

_PART_FIELDS = ";PNUM=9999;PNO=9999"


def header(
    cn: str,
    st: str,
    pw: str,
    mn: str,
    *,
    qn: str | None,
    flag: int | None,
    pnum: int | None = None,
    pno: int | None = None,
) -> str:
    """Header fields in the 2017 order `QN;ST;CN;PW;MN;Flag;PNUM;PNO` (None = omitted)."""
    text = f"ST={st};CN={cn};PW={pw};MN={mn}"
    if qn is not None:
        text = f"QN={qn};{text}"
    if flag is not None:
        text += f";Flag={flag}"
    if pnum is not None:
        text += f";PNUM={pnum};PNO={pno}"
    return text


def frame_bytes(head: str, common: str, groups: list[str] | tuple[str, ...]) -> bytes:
    """`##` + length + `head;CP=&&common;group;…&&` + upper-case CRC + CR LF."""
    body = ";".join([common, *groups]) if groups else common
    segment = f"{head};CP=&&{body}&&".encode()
    return b"##%04d%s%04X\r\n" % (len(segment), segment, hj212_crc(segment))


def pack_groups(head: str, common: str, groups: tuple[str, ...], max_size: int) -> list[list[str]]:
    """Code groups packed greedily into parts whose segments fit `max_size` bytes.

    One part (the groups unchanged) when the whole segment fits.
    """
    whole = len(head) + 6 + len(common) + 2 + sum(len(g) + 1 for g in groups)
    if whole <= max_size:
        return [list(groups)]
    base = len(head) + len(_PART_FIELDS) + 6 + len(common) + 2
    parts: list[list[str]] = []
    current: list[str] = []
    size = base
    for group in groups:
        need = len(group) + 1
        if current and size + need > max_size:
            parts.append(current)
            current, size = [], base
        current.append(group)
        size += need
    if current or not parts:
        parts.append(current)
    return parts
