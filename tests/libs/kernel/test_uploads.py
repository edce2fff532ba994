"""`ecowatt_kernel.uploads`: count, size and kind of uploaded files, refused with a problem."""

from __future__ import annotations

import io

import pytest
from ecowatt_kernel.problems import Problem
from ecowatt_kernel.uploads import UploadLimits, accept_upload, accept_uploads
from fastapi import UploadFile
from starlette.datastructures import Headers

LIMITS = UploadLimits(
    max_file_bytes=10,
    max_files=2,
    suffixes=(".jpg", ".pdf"),
    content_types=("image/jpeg", "application/pdf"),
)


def upload(name: str, data: bytes, content_type: str = "image/jpeg") -> UploadFile:
    return UploadFile(
        io.BytesIO(data), filename=name, headers=Headers({"content-type": content_type})
    )


def status_of(call: object) -> tuple[int, str]:
    with pytest.raises(Problem) as refused:
        call()  # type: ignore[operator]
    return refused.value.status, refused.value.type_suffix


def test_files_within_the_limits_are_accepted_at_their_start() -> None:
    accepted = accept_uploads(
        [upload("a.JPG", b"0123456789"), upload("b.pdf", b"x", "application/pdf")], LIMITS
    )
    assert [(a.filename, a.size) for a in accepted] == [("a.JPG", 10), ("b.pdf", 1)]
    assert accepted[0].file.read() == b"0123456789"


def test_each_limit_is_refused_with_its_own_problem() -> None:
    three = [upload(f"{i}.jpg", b"x") for i in range(3)]
    assert status_of(lambda: accept_uploads(three, LIMITS)) == (422, "too-many-files")
    assert status_of(lambda: accept_upload(upload("a.jpg", b"x" * 11), LIMITS)) == (
        413,
        "file-too-large",
    )
    assert status_of(lambda: accept_upload(upload("a.exe", b"x"), LIMITS)) == (
        415,
        "unsupported-file-type",
    )
    assert status_of(lambda: accept_upload(upload("a.jpg", b"x", "text/html"), LIMITS)) == (
        415,
        "unsupported-file-type",
    )


def test_route_options_cap_the_body_and_the_multipart_parser() -> None:
    options = LIMITS.route_options()
    assert options["max_body_size"] == 2 * 10 + 64 * 1024
    assert options["form_limits"]["max_files"] == 2
    assert options["openapi_extra"]["x-upload-limits"]["max_file_bytes"] == 10
