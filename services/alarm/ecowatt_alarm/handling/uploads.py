"""Enterprise feedback as a streamed multipart body, within limits (issue 21).

The body is read chunk by chunk and parsed as it comes (`python_multipart`); nothing is
spooled to disk and nothing is kept beyond the limits: at most `max_files` attachments of at
most `max_bytes` each, text fields of a few kilobytes. A body announcing more than the limits
allow is refused before it is read. A refusal is a problem (413 too large, 422 too many or
malformed, 415 not multipart) and the alarm is left as it was: nothing is written before the
whole body has been read and checked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ecowatt_kernel.problems import Problem
from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

__all__ = ["Attachment", "Feedback", "read_feedback"]

TEXT_FIELDS = {"text": 5000, "cause": 500}
"""The form's text fields and their limits (characters)."""
FIELD_BYTES = 4 * max(TEXT_FIELDS.values())  # UTF-8: at most four bytes a character
OVERHEAD_BYTES = 64 * 1024  # multipart headers and boundaries


@dataclass
class Attachment:
    filename: str
    content_type: str
    content: bytes
    sha256: str


@dataclass
class Feedback:
    text: str
    cause: str | None
    files: list[Attachment] = field(default_factory=list)


class _Part:
    __slots__ = ("chunks", "content_type", "digest", "filename", "headers", "name", "size")

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.name: str | None = None
        self.filename: str | None = None
        self.content_type = ""
        self.chunks: list[bytes] = []
        self.size = 0
        self.digest = hashlib.sha256()


def _too_large(detail: str) -> Problem:
    return Problem(detail, status=413, type_suffix="attachment-too-large")


def _invalid(detail: str) -> Problem:
    return Problem(detail, status=422, type_suffix="invalid-feedback")


async def read_feedback(request: Request, *, max_files: int, max_bytes: int) -> Feedback:
    """The feedback form of `request`, read as a stream within the limits."""
    ctype, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise Problem(
            "feedback is multipart/form-data: text, cause, files",
            status=415,
            type_suffix="unsupported-media-type",
        )
    limit = max_files * max_bytes + FIELD_BYTES * len(TEXT_FIELDS) + OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(
            f"the feedback is {int(declared)} bytes; at most {max_files} attachments of "
            f"{max_bytes} bytes each are accepted"
        )
    parts: list[_Part] = []
    header: list[bytes] = [b"", b""]
    errors: list[Problem] = []

    def on_part_begin() -> None:
        parts.append(_Part())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        parts[-1].headers[header[0].strip().lower()] = header[1].strip()
        header[0], header[1] = b"", b""

    def on_headers_finished() -> None:
        part = parts[-1]
        _, disposition = parse_options_header(part.headers.get(b"content-disposition"))
        name = disposition.get(b"name")
        filename = disposition.get(b"filename")
        part.name = name.decode("utf-8", "replace") if name is not None else None
        part.filename = filename.decode("utf-8", "replace") if filename is not None else None
        media, _ = parse_options_header(part.headers.get(b"content-type"))
        part.content_type = media.decode("latin-1").lower()
        files = sum(1 for p in parts if p.filename is not None)
        if part.filename is not None and files > max_files:
            errors.append(_invalid(f"at most {max_files} attachments per feedback"))
        elif part.filename is None and part.name not in TEXT_FIELDS:
            errors.append(_invalid(f"unknown field {part.name!r}: text, cause, files"))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = parts[-1]
        chunk = data[start:end]
        part.size += len(chunk)
        if part.filename is not None:
            if part.size > max_bytes:
                errors.append(_too_large(f"attachment {part.filename} exceeds {max_bytes} bytes"))
                return
            part.digest.update(chunk)
        elif part.size > FIELD_BYTES:
            errors.append(_too_large(f"field {part.name} is too long"))
            return
        part.chunks.append(chunk)

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(
                    f"the feedback exceeds {limit} bytes: at most {max_files} attachments of "
                    f"{max_bytes} bytes each"
                )
            parser.write(chunk)
            if errors:
                raise errors[0]
        parser.finalize()
    except MultipartParseError as exc:
        raise _invalid(f"malformed multipart body: {exc}") from None
    if errors:
        raise errors[0]
    fields: dict[str, str] = {}
    files: list[Attachment] = []
    for part in parts:
        body = b"".join(part.chunks)
        if part.filename is None:
            fields[part.name or ""] = body.decode("utf-8", "replace")
        else:
            files.append(
                Attachment(
                    part.filename or "attachment",
                    part.content_type,
                    body,
                    part.digest.hexdigest(),
                )
            )
    text = fields.get("text", "").strip()
    if not text or len(text) > TEXT_FIELDS["text"]:
        raise _invalid(f"text is required, at most {TEXT_FIELDS['text']} characters")
    cause = fields.get("cause") or None
    if cause is not None and len(cause) > TEXT_FIELDS["cause"]:
        raise _invalid(f"cause is at most {TEXT_FIELDS['cause']} characters")
    return Feedback(text, cause, files)
