"""Print the permission matrix as a Markdown table: `python -m ecowatt_auth.authz`.

The auth README carries this table between its `permission-matrix` markers; a test checks
that it is the table this prints."""

from __future__ import annotations

from ecowatt_auth.authz.matrix import DATASETS, MATRIX, NOT_SERVED, PUBLIC
from ecowatt_auth.authz.roles import ROLES

COLUMNS = (
    "admin",
    "city_supervisor",
    "district_officer",
    "enterprise_user",
    "om_operator",
    "auditor",
)
HEADERS = ("管理员", "市局", "区县", "企业", "运维", "审计")


def table() -> str:
    lines = [
        "| Method | Path | " + " | ".join(HEADERS) + " | API key dataset |",
        "|---|---|" + "---|" * len(COLUMNS) + "---|",
    ]
    for rule in MATRIX:
        if rule.access == NOT_SERVED:
            cells = ["—"] * len(COLUMNS)
            dataset = f"not served ({rule.note})" if rule.note else "not served"
        elif rule.access == PUBLIC:
            cells = ["public"] * len(COLUMNS)
            dataset = "public" + (f" ({rule.note})" if rule.note else "")
        else:
            cells = ["✓" if role in {r.value for r in rule.roles} else "" for role in COLUMNS]
            dataset = "any key" if rule.dataset == "*" else (rule.dataset or "")
        lines.append(f"| {rule.method} | `{rule.path}` | " + " | ".join(cells) + f" | {dataset} |")
    return "\n".join(lines)


def datasets() -> str:
    lines = ["| Dataset | 名称 | What |", "|---|---|---|"]
    lines += [f"| `{code}` | {d.name} | {d.description} |" for code, d in DATASETS.items()]
    return "\n".join(lines)


def roles() -> str:
    lines = ["| Role | 名称 | Data scope | What |", "|---|---|---|---|"]
    lines += [
        f"| `{d.role.value}` | {d.name} | {', '.join(d.scopes)} | {d.description} |"
        for d in ROLES.values()
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
