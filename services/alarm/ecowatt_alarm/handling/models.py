"""Request bodies of the handling workflow (下发 → 反馈 → 核查 → 销号)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["ATTACHMENT_MAGIC", "VERIFY_RESULTS", "Close", "Comment", "Dispatch", "Verify"]

VERIFY_RESULTS = {
    "enterprise_problem": "企业问题",
    "equipment_fault": "监测设备故障",
    "false_alarm": "误报",
}

ATTACHMENT_MAGIC = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "application/pdf": (b"%PDF-",),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (b"PK\x03\x04",),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (b"PK\x03\x04",),
}
"""The first bytes an attachment of each declared type must start with."""


class Dispatch(BaseModel):
    district_code: str | None = Field(None, description="Default: the enterprise's district")
    note: str | None = None


class Verify(BaseModel):
    result: Literal["enterprise_problem", "equipment_fault", "false_alarm"]
    note: str | None = None


class Close(BaseModel):
    note: str | None = None


class Comment(BaseModel):
    text: str = Field(min_length=1, max_length=5000)
