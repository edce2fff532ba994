"""The roles of DESIGN §1 as accounts carry them: names, meaning, and allowed data scopes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ecowatt_kernel.identity import Role

__all__ = ["ACCOUNT_ROLES", "ROLES", "RoleDefinition", "ScopeKind"]

ScopeKind = Literal["city", "districts", "enterprises", "om_company"]


@dataclass(frozen=True)
class RoleDefinition:
    role: Role
    name: str
    name_en: str
    description: str
    scopes: tuple[ScopeKind, ...]
    """Data scopes an account of this role may have (the first is the default)."""
    for_accounts: bool = True


ROLES: dict[Role, RoleDefinition] = {
    d.role: d
    for d in (
        RoleDefinition(
            Role.ADMIN,
            "系统管理员",
            "Administrator",
            "账号、角色、API 密钥、审计；可访问全部功能 (accounts, roles, API keys, audit; "
            "every endpoint)",
            ("city",),
        ),
        RoleDefinition(
            Role.CITY_SUPERVISOR,
            "市局监管人员",
            "City bureau supervisor",
            "监控全市、处置报警、发起管控、编制报表 (watches the city, handles alarms, launches "
            "control plans, files reports)",
            ("city",),
        ),
        RoleDefinition(
            Role.DISTRICT_OFFICER,
            "区县分局人员",
            "District officer",
            "处置下发到本区县的报警和管控任务 (handles the alarms and control tasks of their "
            "districts)",
            ("districts",),
        ),
        RoleDefinition(
            Role.ENTERPRISE_USER,
            "企业用户",
            "Enterprise user",
            "查看本企业设施、反馈报警、计划停运报备 (sees own facilities, answers alarms, files "
            "planned outages)",
            ("enterprises",),
        ),
        RoleDefinition(
            Role.OM_OPERATOR,
            "运维人员",
            "O&M operator",
            "绑定设备、维护档案和阈值、跟进数据质量问题 (binds devices, fixes archive and "
            "threshold data, chases data-quality issues)",
            ("om_company", "enterprises", "city"),
        ),
        RoleDefinition(
            Role.AUDITOR,
            "安全审计员",
            "Security auditor",
            "查阅审计日志、处置安全告警，不能修改业务数据 (reads the audit log and handles "
            "security alerts; changes no business data) — 等保三级的审计管理员",
            ("city",),
        ),
        RoleDefinition(
            Role.PARTNER,
            "数据共享方",
            "Data-sharing partner",
            "通过 API 密钥按数据集和区县读取数据 (reads datasets through an API key)",
            ("districts", "city"),
            for_accounts=False,
        ),
    )
}

ACCOUNT_ROLES = tuple(role for role, d in ROLES.items() if d.for_accounts)
