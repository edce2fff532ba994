"""Cut a TCP byte stream into frames and rejected spans."""

from __future__ import annotations

from dataclasses import dataclass

from ._decoder import split_trailer
from ._model import Trailer
from ._reasons import Reason

_HEX = frozenset(b"0123456789abcdefABCDEF")
# a frame may stop after its CRC when the trailer is one of these or a prefix of one
_TRAILER_PREFIXES = (b"\r", b"\r\r", b"\\", b"\\r", b"\\r\\")
# garbage is held (not reported) while shorter than this, so that one bad span is one event
_GARBAGE_HOLD = 1024


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One complete frame cut from the stream (pass ``data`` to :func:`decode`)."""

    data: bytes
    offset: int
    """Stream offset of the first ``#``."""
    trailer: Trailer


@dataclass(frozen=True, slots=True)
class RejectedSpan:
    """Bytes the framer skipped, with the reason (garbage, bad length field, truncation)."""

    data: bytes
    offset: int
    reason: Reason
    explanation: str


FramerEvent = RawFrame | RejectedSpan


class StreamFramer:
    """Incremental framer: feed chunks as they arrive, get frames and rejected spans.

    Every input byte ends up in exactly one emitted frame or span, in stream order.
    Frames are found by ``##`` + 4-digit length; the frame must be followed by its CRC and a
    trailer (CR LF, LF, CR, CR CR LF, the text ``\\r\\n``, or nothing).  When the declared
    length does not fit, the frame is re-cut at the next line end or ``##`` and accepted if
    the length counts characters instead of bytes; otherwise the span is rejected and the
    framer resynchronises on the next ``##``.

    Memory stays below ``max_segment_size`` plus about 1 KiB of held garbage.  A frame that
    ends exactly at the end of the data fed so far is held back until the next byte shows
    whether a trailer follows; call :meth:`flush` when the connection goes idle or closes to
    release it.
    """

    def __init__(self, *, max_segment_size: int = 4096) -> None:
        if max_segment_size < 0:
            raise ValueError("max_segment_size must be >= 0")
        self._max_segment = max_segment_size
        # longest frame: '##' + 4 digits + segment + CRC + the longest trailer
        self._max_frame = 6 + max_segment_size + 4 + 4
        self._buffer = bytearray()
        self._offset = 0

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buffer)

    @property
    def mid_frame(self) -> bool:
        """True while the held bytes end in the start of a plausible frame still arriving.

        Anything else held (a whole frame waiting only for its trailer, short garbage, a
        span whose length field is impossible) can be released by :meth:`flush` after a
        short idle; a frame still arriving deserves a longer wait on a slow link.
        """
        buffer = self._buffer
        start = buffer.rfind(b"##")
        if start < 0:
            return False
        head = bytes(buffer[start + 2 : start + 6])
        if len(head) < 4:
            return head.isdigit() or not head
        if not head.isdigit():
            return False
        declared = int(head)
        return declared <= self._max_segment and len(buffer) < start + 10 + declared

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[FramerEvent]:
        """Add received bytes; return the frames and rejected spans they complete."""
        self._buffer += chunk
        return self._scan(final=False)

    def flush(self) -> list[FramerEvent]:
        """End of stream or idle link: release a held frame, reject what cannot complete."""
        return self._scan(final=True)

    def _scan(self, *, final: bool) -> list[FramerEvent]:
        buf = self._buffer
        out: list[FramerEvent] = []
        pos = 0
        size = len(buf)
        while pos < size:
            start = buf.find(b"##", pos)
            if start < 0:
                if not final and size - pos <= _GARBAGE_HOLD:
                    break  # hold short garbage: the next chunk may extend it or bring '##'
                # keep a lone trailing '#': it may be the first half of the next header
                end = size - 1 if (not final and buf[size - 1] == 0x23) else size
                self._reject(out, buf, pos, end, Reason.GARBAGE, "bytes outside any frame")
                pos = end
                break
            if start > pos:
                self._reject(out, buf, pos, start, Reason.GARBAGE, "bytes outside any frame")
            pos = start
            result = self._cut(buf, start, size, final)
            if result is None:
                break
            end, verdict = result
            if isinstance(verdict, Trailer):
                out.append(RawFrame(bytes(buf[start:end]), self._offset + start, verdict))
            else:
                # a rejected frame takes the bytes up to the next '##' with it
                resync = buf.find(b"##", end)
                if resync < 0:
                    if not final and size - end <= _GARBAGE_HOLD:
                        break
                    resync = size - 1 if (not final and buf[size - 1] == 0x23) else size
                self._reject(out, buf, start, resync, verdict[0], verdict[1])
                end = resync
            pos = end
        if pos:
            del buf[:pos]
            self._offset += pos
        return out

    def _reject(
        self,
        out: list[FramerEvent],
        buf: bytearray,
        start: int,
        end: int,
        reason: Reason,
        explanation: str,
    ) -> None:
        offset = self._offset + start
        if reason is Reason.GARBAGE and out:
            last = out[-1]
            # garbage right after a rejected frame belongs to the same bad span
            if isinstance(last, RejectedSpan) and last.offset + len(last.data) == offset:
                out[-1] = RejectedSpan(
                    last.data + bytes(buf[start:end]), last.offset, last.reason, last.explanation
                )
                return
        out.append(RejectedSpan(bytes(buf[start:end]), offset, reason, explanation))

    def _cut(
        self, buf: bytearray, start: int, size: int, final: bool
    ) -> tuple[int, Trailer | tuple[Reason, str]] | None:
        """Decide about the candidate at ``start``: (end, trailer) for a frame,
        (end, (reason, text)) for a rejected span, or ``None`` to wait for more bytes."""
        if size - start < 6:
            if not final:
                return None
            return size, (Reason.FRAME_TRUNCATED, "stream ended inside a frame header")
        length_field = bytes(buf[start + 2 : start + 6])
        if not length_field.isdigit():
            return self._recut(buf, start, size, final, None)
        declared = int(length_field)
        if declared > self._max_segment:
            return start + 6, (
                Reason.LENGTH_EXCEEDS_LIMIT,
                f"declared length {declared} exceeds the limit of {self._max_segment} bytes",
            )
        seg_end = start + 6 + declared
        crc_end = seg_end + 4
        if crc_end > size:
            interrupted = self._inner_header(buf, start, size)
            if interrupted is not None:
                return interrupted, (
                    Reason.FRAME_TRUNCATED,
                    "frame interrupted by a new '##' header before its declared end",
                )
            if not final:
                return None
            return self._recut(buf, start, size, final, declared)
        if _HEX.issuperset(buf[seg_end:crc_end]):
            rest = bytes(buf[crc_end : crc_end + 4])
            if rest.startswith(b"\r\n"):
                return crc_end + 2, Trailer.CRLF
            if rest.startswith(b"\n"):
                return crc_end + 1, Trailer.LF
            if rest.startswith(b"\r\r\n"):
                return crc_end + 3, Trailer.CR_CR_LF
            if rest.startswith(b"\\r\\n"):
                return crc_end + 4, Trailer.ESCAPED_TEXT
            if buf[seg_end - 2 : seg_end] == b"&&":
                if not final and (not rest or rest in _TRAILER_PREFIXES):
                    return None
                if rest.startswith(b"\r"):
                    return crc_end + 1, Trailer.CR
                return crc_end, Trailer.NONE
        return self._recut(buf, start, size, final, declared)

    def _inner_header(self, buf: bytearray, start: int, size: int) -> int | None:
        """Position of a ``##dddd`` header inside the current candidate, if any."""
        inner = buf.find(b"##", start + 2, size)
        while inner >= 0 and inner + 6 <= size:
            if bytes(buf[inner + 2 : inner + 6]).isdigit():
                return inner
            inner = buf.find(b"##", inner + 2, size)
        return None

    def _recut(
        self, buf: bytearray, start: int, size: int, final: bool, declared: int | None
    ) -> tuple[int, Trailer | tuple[Reason, str]] | None:
        """The declared length does not fit: cut at the next line end or ``##`` instead."""
        limit = min(size, start + self._max_frame)
        newline = buf.find(b"\n", start + 2, limit)
        header = buf.find(b"##", start + 2, limit)
        if newline >= 0 and (header < 0 or newline < header):
            end = newline + 1
        elif header >= 0:
            end = header
        elif final or size - start >= self._max_frame:
            end = limit
        else:
            return None
        candidate = bytes(buf[start:end])
        if declared is None:
            return end, (
                Reason.LENGTH_FIELD_MALFORMED,
                f"length field {candidate[2:6]!r} is not 4 decimal digits",
            )
        body_end, trailer = split_trailer(candidate)
        segment = candidate[6 : body_end - 4]
        if body_end - 4 >= 6 and _HEX.issuperset(candidate[body_end - 4 : body_end]):
            try:
                characters = len(segment.decode("utf-8"))
            except UnicodeDecodeError:
                characters = -1
            if characters == declared:
                return end, trailer
            detail = (
                f"declared length {declared}, but the frame holds a {len(segment)}-byte segment"
            )
        else:
            detail = f"no CRC and trailer where declared length {declared} puts them"
        if end == header and end < start + 6 + declared + 4:
            return end, (
                Reason.FRAME_TRUNCATED,
                "frame interrupted by a new '##' header before its declared end",
            )
        return end, (Reason.LENGTH_MISMATCH, detail)
