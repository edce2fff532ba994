"""Accounts as Excel: the export, the import template and reading an import (开设账号 in bulk)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ecowatt_kernel.excel import CellError, Column, ParsedSheet, Sheet, write_workbook
from ecowatt_kernel.identity import Role
from pydantic import ValidationError

from ecowatt_auth.accounts.models import UserCreate, UserRead
from ecowatt_auth.authz.roles import ACCOUNT_ROLES, ROLES

SHEET = "账号"
_SCOPE_NAMES = {
    "全市": "city",
    "区县": "districts",
    "企业": "enterprises",
    "运维单位": "om_company",
}
_SCOPE_LABELS = {v: k for k, v in _SCOPE_NAMES.items()}

IMPORT_COLUMNS = (
    Column("username", "登录名", required=True, width=18, note="3-64 位小写字母、数字或 . _ @ -"),
    Column("display_name", "姓名", required=True, width=12),
    Column(
        "role",
        "角色",
        required=True,
        width=16,
        choices=tuple(ROLES[r].name for r in ACCOUNT_ROLES),
        note="角色名称或代码",
    ),
    Column(
        "scope_kind",
        "数据范围",
        required=True,
        width=12,
        choices=tuple(_SCOPE_NAMES),
        note="全市 / 区县 / 企业 / 运维单位",
    ),
    Column("districts", "区县代码", width=20, note="GB/T 2260 六位代码，多个用顿号或逗号分隔"),
    Column("enterprises", "企业ID", width=30, note="多个用顿号或逗号分隔"),
    Column("om_company", "运维单位", width=24),
    Column("phone", "手机号", width=14),
    Column("email", "邮箱", width=22),
    Column("organisation", "单位", width=24),
    Column("account_expires_at", "账号有效期至", width=18, note="日期，可空"),
)

EXPORT_COLUMNS = (
    Column("username", "登录名", width=18),
    Column("display_name", "姓名", width=12),
    Column("role_name", "角色", width=16),
    Column("scope_label", "数据范围", width=10),
    Column("districts", "区县代码", width=20),
    Column("enterprises", "企业ID", width=30),
    Column("om_company", "运维单位", width=24),
    Column("phone", "手机号", width=14),
    Column("organisation", "单位", width=24),
    Column("status_label", "状态", width=8),
    Column("account_expires_at", "账号有效期至", width=18),
    Column("password_expires_at", "密码到期", width=18),
    Column("totp_label", "双因素", width=8),
    Column("last_login_at", "最近登录", width=18),
    Column("last_login_ip", "最近登录地址", width=16),
    Column("created_at", "创建时间", width=18),
)


def export_rows(users: list[UserRead]) -> list[dict[str, Any]]:
    return [
        {
            **u.model_dump(),
            "scope_label": _SCOPE_LABELS[u.scope.kind],
            "districts": u.scope.districts,
            "enterprises": u.scope.enterprises,
            "om_company": u.scope.om_company,
            "status_label": "启用" if u.status == "active" else "停用",
            "totp_label": "已启用" if u.totp_enabled else "",
        }
        for u in users
    ]


def template_bytes() -> bytes:
    example = {
        "username": "zhang.wei",
        "display_name": "张伟",
        "role": ROLES[Role.DISTRICT_OFFICER].name,
        "scope_kind": "区县",
        "districts": "610112",
        "phone": "13800000000",
        "organisation": "西安市生态环境局未央分局",
    }
    notes = [{"header": c.header, "key": c.key, "note": c.note} for c in IMPORT_COLUMNS]
    return write_workbook(
        [
            Sheet(title=SHEET, columns=IMPORT_COLUMNS, rows=[example], dropdowns=True),
            Sheet(
                title="说明",
                columns=(
                    Column("header", "列名", width=16),
                    Column("key", "字段", width=20),
                    Column("note", "说明", width=60),
                ),
                rows=notes,
            ),
        ]
    )


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    text = str(value).replace("，", ",").replace("、", ",").replace(";", ",")
    return [part.strip() for part in text.split(",") if part.strip()]


def _role(value: Any) -> str:
    text = str(value or "").strip()
    for role in ACCOUNT_ROLES:
        if text in (role.value, ROLES[role].name):
            return role.value
    return text


def parse_rows(parsed: ParsedSheet) -> tuple[list[tuple[int, UserCreate]], list[CellError]]:
    """Valid rows as UserCreate (with their row numbers) and the errors of the others."""
    errors = list(parsed.errors)
    users: list[tuple[int, UserCreate]] = []
    seen: dict[str, int] = {}
    for row in parsed.rows:
        values = row.values
        expires = values.get("account_expires_at")
        if isinstance(expires, str):
            try:
                expires = datetime.fromisoformat(expires)
            except ValueError:
                errors.append(CellError(SHEET, row.row, "账号有效期至", "不是日期"))
                continue
        scope_kind = _SCOPE_NAMES.get(
            str(values.get("scope_kind") or "").strip(), values.get("scope_kind")
        )
        data = {
            "username": values.get("username"),
            "display_name": values.get("display_name"),
            "role": _role(values.get("role")),
            "phone": str(values["phone"]) if values.get("phone") is not None else None,
            "email": values.get("email"),
            "organisation": values.get("organisation"),
            "account_expires_at": expires,
            "scope": {
                "kind": scope_kind,
                "districts": _split(values.get("districts")),
                "enterprises": _split(values.get("enterprises")),
                "om_company": values.get("om_company"),
            },
        }
        try:
            body = UserCreate.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                column = str(error["loc"][0]) if error["loc"] else ""
                header = next((c.header for c in IMPORT_COLUMNS if c.key == column), column)
                errors.append(CellError(SHEET, row.row, header, str(error["msg"])))
            continue
        if body.username in seen:
            errors.append(CellError(SHEET, row.row, "登录名", f"与第 {seen[body.username]} 行重复"))
            continue
        seen[body.username] = row.row
        users.append((row.row, body))
    return users, errors
