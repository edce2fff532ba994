"""Rules: each rule with its version and parameters; admins change parameters (a new version)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import Column
from ecowatt_kernel.identity import CurrentIdentity, require_roles
from ecowatt_kernel.problems import NotFound, Problem
from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from ecowatt_validation.api.common import Format, xlsx_download
from ecowatt_validation.models import RULE_VERSIONS, RULES_TABLE
from ecowatt_validation.rules import RULES, RULES_BY_CODE
from ecowatt_validation.runtime import CurrentRuntime

router = APIRouter(tags=["validation"])


class RuleOut(BaseModel):
    code: str
    name_zh: str
    name_en: str
    kind: str
    triggers: list[str]
    subject: str
    severity: str
    formula: str
    version: int
    enabled: bool
    params: dict[str, Any]
    defaults: dict[str, Any]
    updated_at: datetime | None = None
    updated_by: str | None = None


class RuleUpdate(BaseModel):
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool | None = None
    reason: str | None = None


def _rule_out(row: Any) -> RuleOut:
    rule = RULES_BY_CODE[row.code]
    return RuleOut(
        code=rule.code,
        name_zh=rule.name_zh,
        name_en=rule.name_en,
        kind=rule.kind,
        triggers=list(rule.triggers),
        subject=rule.subject,
        severity=rule.severity,
        formula=rule.formula,
        version=row.version,
        enabled=row.enabled,
        params={**rule.defaults, **row.params},
        defaults=dict(rule.defaults),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


@router.get("/rules", summary="Every rule with its version and parameters")
async def list_rules(identity: CurrentIdentity, session: DbSession, format: Format = "json") -> Any:
    rows = {r.code: r for r in await session.execute(select(RULES_TABLE))}
    out = [_rule_out(rows[r.code]) for r in RULES if r.code in rows]
    if format == "xlsx":
        columns = [
            Column("code", "规则编码", width=30),
            Column("name_zh", "规则名称", width=36),
            Column("name_en", "Rule", width=40),
            Column("version", "版本", width=6),
            Column("enabled", "启用", width=6),
            Column("params", "参数", width=60),
            Column("formula", "计算方法", width=100),
        ]
        return await xlsx_download(
            columns,
            (
                {**o.model_dump(), "params": str(o.params), "enabled": "是" if o.enabled else "否"}
                for o in out
            ),
            "规则",
            "rules",
        )
    return out


@router.get("/rules/{code}", summary="One rule and its version history")
async def get_rule(code: str, identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    row = (await session.execute(select(RULES_TABLE).where(RULES_TABLE.c.code == code))).first()
    if row is None or code not in RULES_BY_CODE:
        raise NotFound(f"no rule {code!r}")
    versions = await session.execute(
        select(RULE_VERSIONS).where(RULE_VERSIONS.c.code == code).order_by(RULE_VERSIONS.c.version)
    )
    return {**_rule_out(row).model_dump(), "versions": [dict(v._mapping) for v in versions]}


@router.put(
    "/rules/{code}",
    summary="Change a rule's parameters (admins); writes a new rule version",
    dependencies=[require_roles()],
)
async def update_rule(
    code: str,
    body: RuleUpdate,
    identity: CurrentIdentity,
    session: DbSession,
    service: CurrentRuntime,
) -> RuleOut:
    if code not in RULES_BY_CODE:
        raise NotFound(f"no rule {code!r}")
    try:
        await service.rulebook.update(
            session,
            code,
            params=body.params,
            enabled=body.enabled,
            actor=identity.subject,
            reason=body.reason,
        )
    except ValueError as exc:
        raise Problem(str(exc), status=422, type_suffix="invalid-parameters") from None
    await session.commit()
    row = (await session.execute(select(RULES_TABLE).where(RULES_TABLE.c.code == code))).one()
    return _rule_out(row)
