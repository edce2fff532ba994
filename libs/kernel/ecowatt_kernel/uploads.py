"""Bounded file uploads: how many files, how large, of which kind — refused before use.

An upload route declares its `UploadLimits` twice, in the decorator (the request body and
the multipart parser are capped while the bytes arrive: nothing beyond the limit is read)
and in the handler (each file is checked once received):

    EXCEL = UploadLimits(max_files=1, max_file_bytes=20 * MIB, suffixes=(".xlsx",))

    @router.post("/import", **EXCEL.route_options())
    async def import_archive(file: Annotated[UploadFile, File()]) -> ...:
        upload = accept_upload(file, EXCEL)           # 413 / 415 problem when refused
        workbook = await asyncio.to_thread(load_workbook_bytes, upload.file)

Files stream to a temporary file as they arrive (Starlette's multipart parser spools each
file to disk past 1 MiB), so memory does not grow with the upload. Problems name the limit
that was hit: too many files (422), a file too large (413), a file name or content type not
accepted (415).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from fastapi import UploadFile

from ecowatt_kernel.problems import Problem

__all__ = ["MIB", "AcceptedUpload", "UploadLimits", "accept_upload", "accept_uploads"]

MIB = 1024 * 1024
_MULTIPART_OVERHEAD = 64 * 1024
"""Room for boundaries, part headers and small form fields beside the files."""


@dataclass(frozen=True)
class UploadLimits:
    """What one upload route accepts."""

    max_file_bytes: int
    max_files: int = 1
    suffixes: tuple[str, ...] = ()
    """Accepted file-name endings, lower case (e.g. ".xlsx"); empty: any."""
    content_types: tuple[str, ...] = ()
    """Accepted declared content types; empty: any."""
    max_fields: int = 20
    """Non-file form fields."""

    @property
    def max_body_bytes(self) -> int:
        return self.max_files * self.max_file_bytes + _MULTIPART_OVERHEAD

    def route_options(self) -> dict[str, Any]:
        """Keyword arguments for the route decorator: body and multipart limits, documented
        in the OpenAPI operation as `x-upload-limits`."""
        return {
            "max_body_size": self.max_body_bytes,
            "form_limits": {
                "max_files": self.max_files,
                "max_fields": self.max_fields,
                "max_part_size": _MULTIPART_OVERHEAD,
            },
            "openapi_extra": {
                "x-upload-limits": {
                    "max_files": self.max_files,
                    "max_file_bytes": self.max_file_bytes,
                    "suffixes": list(self.suffixes),
                }
            },
        }


@dataclass(frozen=True)
class AcceptedUpload:
    """A received file within its limits; `file` is positioned at its start."""

    filename: str
    content_type: str | None
    size: int
    file: IO[bytes]


def _size_of(upload: UploadFile) -> int:
    if upload.size is not None:
        return upload.size
    upload.file.seek(0, 2)
    size = upload.file.tell()
    upload.file.seek(0)
    return size


def _unsupported(what: str, accepted: tuple[str, ...]) -> Problem:
    return Problem(
        f"{what}不受支持，只接受 {'、'.join(accepted)} (accepted: {', '.join(accepted)})",
        status=415,
        type_suffix="unsupported-file-type",
        accepted=list(accepted),
    )


def accept_upload(upload: UploadFile, limits: UploadLimits) -> AcceptedUpload:
    """`upload` checked against `limits` (size, name, type), or a problem naming the limit."""
    name = upload.filename or ""
    if limits.suffixes and not name.lower().endswith(limits.suffixes):
        raise _unsupported(f"文件“{name[:100]}”的类型", limits.suffixes)
    declared = (upload.content_type or "").split(";")[0].strip().lower()
    if limits.content_types and declared not in limits.content_types:
        raise _unsupported(f"内容类型“{declared or '无'}”", limits.content_types)
    size = _size_of(upload)
    if size > limits.max_file_bytes:
        raise Problem(
            f"文件“{name[:100]}”有 {size} 字节，超过上限 {limits.max_file_bytes} 字节 "
            f"(a file may have at most {limits.max_file_bytes} bytes)",
            status=413,
            type_suffix="file-too-large",
            max_file_bytes=limits.max_file_bytes,
            size=size,
        )
    upload.file.seek(0)
    return AcceptedUpload(filename=name, content_type=declared or None, size=size, file=upload.file)


def accept_uploads(uploads: Sequence[UploadFile], limits: UploadLimits) -> list[AcceptedUpload]:
    """Each of `uploads` accepted (see `accept_upload`), and no more than `max_files`."""
    if len(uploads) > limits.max_files:
        raise Problem(
            f"最多上传 {limits.max_files} 个文件（本次 {len(uploads)} 个） "
            f"(at most {limits.max_files} files per request)",
            status=422,
            type_suffix="too-many-files",
            max_files=limits.max_files,
        )
    return [accept_upload(upload, limits) for upload in uploads]
