"""The permission matrix: every endpoint behind the gateway, who may call it, and which
partner dataset (if any) it belongs to. This is the one place it is written down.

- The gateway reads it to let public endpoints through without credentials, to refuse the
  operations endpoints (they stay on the service ports), to keep API keys to their datasets,
  and to name the route template in each audit event.
- The services enforce the roles themselves (`require_roles`); `tests/authz` calls every
  route of every service as every role and checks that each gets exactly what this matrix
  says, and that no route is missing from it.
- The auth README's matrix table is generated from it (`python -m ecowatt_auth.authz`).

Administrators pass every role check (the kernel's `require_roles`); they are listed
explicitly anyway so that a row reads on its own. API keys act with the `partner` role and
may only read (GET) endpoints tagged with one of their datasets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from ecowatt_kernel.identity import Role

__all__ = [
    "ANY_KEY",
    "DATASETS",
    "EDITORS",
    "MATRIX",
    "NOT_SERVED",
    "PEOPLE",
    "PUBLIC",
    "REPORTING_DATASETS",
    "Dataset",
    "Matcher",
    "Rule",
]

Access = Literal["public", "not_served", "roles"]

A, CS, DO, EU, OM, AU = (
    Role.ADMIN,
    Role.CITY_SUPERVISOR,
    Role.DISTRICT_OFFICER,
    Role.ENTERPRISE_USER,
    Role.OM_OPERATOR,
    Role.AUDITOR,
)
PEOPLE = frozenset({A, CS, DO, EU, OM, AU})
"""Every person with an account (reads filtered by their data scope)."""
EDITORS = frozenset({A, CS, DO, OM})
"""Who edits the archive (registry `access.EDIT_ROLES`)."""
HANDLERS = frozenset({A, CS, DO})
"""Bureau staff who handle alarms (alarm `HANDLERS`)."""
ADMINS = frozenset({A})
SECURITY = frozenset({A, AU})
"""Administrators and security auditors: the audit log and security alerts."""
PUBLIC: Final = "public"
NOT_SERVED: Final = "not_served"
ANY_KEY = "*"
"""Dataset of endpoints every API key may call (who am I, which datasets exist)."""


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str


DATASETS: dict[str, Dataset] = {
    "archive": Dataset(
        "企业档案", "Enterprises, facilities, devices, points, control groups, reference codes"
    ),
    "alarms": Dataset("报警", "Alarms (live and history) and alarm statistics"),
    "states": Dataset("设施状态", "Current and past states of points and facilities"),
    "quality": Dataset("数据质量", "Data-quality findings, scorecards, daily completeness"),
    "devices": Dataset("设备在线", "Device connection state (online, last seen)"),
    "control": Dataset("重污染天气管控", "Control plans, alert orders, tasks and compliance"),
    "telemetry": Dataset(
        "用电数据", "Latest readings and 15-minute energy and power of every point"
    ),
}
"""What an API key can be granted (`ApiKeyCreate.datasets`): each names a group of reads.
The reporting service's incremental datasets (`/api/reporting/datasets/<name>`) each belong
to one of these (`REPORTING_DATASETS`), which the identity forwarded to reporting carries
(`Identity.datasets`) so that reporting checks the key too."""

REPORTING_DATASETS: dict[str, str] = {
    "enterprises": "archive",
    "points": "archive",
    "latest_values": "telemetry",
    "energy_15min": "telemetry",
    "alarms": "alarms",
    "compliance": "control",
}
"""Reporting's partner datasets (its `datasets.service.DATASETS`) → the key dataset that
grants each; reporting writes the same pairs (`Dataset.grant`), a test holds them equal."""


@dataclass(frozen=True)
class Rule:
    """Who may call `method path` (a gateway path; `{x}` is one segment, `*` one segment
    of any value, a trailing `/**` anything below)."""

    method: str
    path: str
    access: Access | frozenset[Role]
    dataset: str | None = None
    note: str = ""
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    specificity: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = ""
        rest = self.path
        if rest.endswith("/**"):
            rest = rest[:-3]
        for part in rest.strip("/").split("/"):
            if part == "*" or (part.startswith("{") and part.endswith("}")):
                regex += "/[^/]+"
            else:
                regex += "/" + re.escape(part)
        if self.path.endswith("/**"):
            regex += "(?:/.*)?"
        object.__setattr__(self, "pattern", re.compile(regex + "$"))
        # Literal paths beat templates beat wildcards (FastAPI's declaration order agrees).
        object.__setattr__(
            self,
            "specificity",
            (self.path.endswith("/**"), self.path.count("{") + self.path.count("*")),
        )

    @property
    def service(self) -> str:
        return self.path.split("/")[2]

    @property
    def public(self) -> bool:
        return self.access == PUBLIC

    @property
    def served(self) -> bool:
        return self.access != NOT_SERVED

    @property
    def roles(self) -> frozenset[Role]:
        return self.access if isinstance(self.access, frozenset) else frozenset()

    def allows(self, role: Role) -> bool:
        """Whether a person with `role` gets past the role checks (not partners: see
        `allows_key`)."""
        if self.access == PUBLIC:
            return True
        return role in self.roles

    def allows_key(self, datasets: Iterable[str]) -> bool:
        """Whether an API key with `datasets` may call this endpoint."""
        if self.method != "GET" or self.dataset is None:
            return False
        return self.dataset == ANY_KEY or self.dataset in set(datasets)


def _crud(service: str, resource: str, dataset: str | None, editors: frozenset[Role]) -> list[Rule]:
    base = f"/api/{service}/{resource}"
    return [
        Rule("GET", base, PEOPLE, dataset),
        Rule("POST", base, editors),
        Rule("GET", f"{base}.xlsx", PEOPLE),
        Rule("GET", f"{base}/{{key}}", PEOPLE, dataset),
        Rule("PATCH", f"{base}/{{key}}", editors),
        Rule("DELETE", f"{base}/{{key}}", editors),
    ]


_OPERATIONS = [
    Rule("GET", "/api/*/healthz", NOT_SERVED, note="service port"),
    Rule("GET", "/api/*/readyz", NOT_SERVED, note="service port, for the orchestrator"),
    Rule("GET", "/api/*/metrics", NOT_SERVED, note="service port, for Prometheus"),
    Rule("GET", "/api/*/openapi.json", NOT_SERVED, note="merged at /api/openapi.json"),
    Rule("GET", "/api/*/docs", NOT_SERVED, note="merged at /api/docs"),
    Rule("GET", "/api/*/docs/oauth2-redirect", NOT_SERVED),
    Rule("GET", "/api/*/redoc", NOT_SERVED),
]

_AUTH = [
    Rule("POST", "/api/auth/session", PUBLIC, note="log in (browser)"),
    Rule("GET", "/api/auth/session", PEOPLE),
    Rule("DELETE", "/api/auth/session", PEOPLE),
    Rule("POST", "/api/auth/token", PUBLIC, note="log in (script)"),
    Rule("DELETE", "/api/auth/token", PEOPLE),
    Rule("POST", "/api/auth/password", PUBLIC, note="needs the current password"),
    Rule("GET", "/api/auth/me", PEOPLE, ANY_KEY),
    Rule("POST", "/api/auth/totp/setup", PEOPLE),
    Rule("POST", "/api/auth/totp/enable", PEOPLE),
    Rule("POST", "/api/auth/totp/disable", PEOPLE),
    Rule("GET", "/api/auth/jwks.json", PUBLIC, note="identity keys"),
    Rule("GET", "/api/auth/datasets", PEOPLE, ANY_KEY),
    Rule("GET", "/api/auth/roles", PEOPLE),
    Rule("GET", "/api/auth/permissions", PEOPLE),
    Rule("GET", "/api/auth/users", ADMINS),
    Rule("POST", "/api/auth/users", ADMINS),
    Rule("GET", "/api/auth/users.xlsx", ADMINS),
    Rule("GET", "/api/auth/users/import/template", ADMINS),
    Rule("POST", "/api/auth/users/import", ADMINS),
    Rule("GET", "/api/auth/users/{user_id}", ADMINS),
    Rule("PATCH", "/api/auth/users/{user_id}", ADMINS),
    Rule("POST", "/api/auth/users/{user_id}/reset-password", ADMINS),
    Rule("POST", "/api/auth/users/{user_id}/unlock", ADMINS),
    Rule("POST", "/api/auth/users/{user_id}/revoke-sessions", ADMINS),
    Rule("POST", "/api/auth/users/{user_id}/totp/reset", ADMINS),
    Rule("GET", "/api/auth/api-keys", ADMINS),
    Rule("POST", "/api/auth/api-keys", ADMINS),
    Rule("GET", "/api/auth/api-keys/{key_id}", ADMINS),
    Rule("PATCH", "/api/auth/api-keys/{key_id}", ADMINS),
    Rule("POST", "/api/auth/api-keys/{key_id}/rotate", ADMINS),
    Rule("POST", "/api/auth/api-keys/{key_id}/revoke", ADMINS),
    Rule("GET", "/api/auth/audit", SECURITY),
    Rule("GET", "/api/auth/audit.xlsx", SECURITY),
    Rule("GET", "/api/auth/audit/verify", SECURITY),
    Rule("GET", "/api/auth/audit/{seq}", SECURITY),
    Rule("GET", "/api/auth/security-alerts", SECURITY),
    Rule("GET", "/api/auth/security-alerts.xlsx", SECURITY),
    Rule("GET", "/api/auth/security-alerts/{alert_id}", SECURITY),
    Rule("POST", "/api/auth/security-alerts/{alert_id}/handle", SECURITY),
    Rule("GET", "/api/auth/security-rules", SECURITY),
]

_REGISTRY = [
    *_crud("registry", "enterprises", "archive", EDITORS),
    Rule("POST", "/api/registry/enterprises/bulk", EDITORS),
    Rule("GET", "/api/registry/enterprises/{key}/grades", PEOPLE, "archive"),
    Rule("GET", "/api/registry/enterprises/{key}/archive", PEOPLE, "archive"),
    *_crud("registry", "production-lines", "archive", EDITORS),
    *_crud("registry", "facilities", "archive", EDITORS),
    *_crud("registry", "devices", "archive", EDITORS),
    Rule("PUT", "/api/registry/devices/{key}/password", EDITORS),
    *_crud("registry", "points", "archive", EDITORS),
    *_crud("registry", "control-groups", "archive", EDITORS),
    Rule("GET", "/api/registry/history", PEOPLE),
    Rule("GET", "/api/registry/import/template", PEOPLE),
    Rule("POST", "/api/registry/import", EDITORS),
    Rule("GET", "/api/registry/export/archive.xlsx", PEOPLE),
    Rule("GET", "/api/registry/reference/districts", PEOPLE, "archive"),
    Rule("GET", "/api/registry/reference/industries", PEOPLE, "archive"),
    Rule("GET", "/api/registry/reference/zones", PEOPLE, "archive"),
    Rule("GET", "/api/registry/admin/synthetic-city", ADMINS),
    Rule("POST", "/api/registry/admin/synthetic-city", ADMINS),
    Rule("POST", "/api/registry/admin/republish", ADMINS),
]

_VALIDATION = [
    Rule("GET", "/api/validation/rules", PEOPLE),
    Rule("GET", "/api/validation/rules/{code}", PEOPLE),
    Rule("PUT", "/api/validation/rules/{code}", ADMINS),
    Rule("GET", "/api/validation/findings", PEOPLE, "quality"),
    Rule("GET", "/api/validation/findings/{finding_id}", PEOPLE, "quality"),
    Rule("GET", "/api/validation/issues/daily", PEOPLE),
    Rule("GET", "/api/validation/scorecards", PEOPLE, "quality"),
    Rule("GET", "/api/validation/scorecards/{enterprise_id}", PEOPLE, "quality"),
    Rule("GET", "/api/validation/stats/daily", PEOPLE, "quality"),
    Rule("GET", "/api/validation/unbound", PEOPLE),
    Rule("POST", "/api/validation/runs", frozenset({A, CS})),
    Rule("GET", "/api/validation/runs", PEOPLE),
    Rule("POST", "/api/validation/archive/complete", frozenset({A, CS, OM})),
]

_ALARM = [
    Rule("GET", "/api/alarm/alarms", PEOPLE, "alarms"),
    Rule("GET", "/api/alarm/alarms/export.xlsx", PEOPLE),
    Rule("GET", "/api/alarm/alarms/{alarm_id}", PEOPLE, "alarms"),
    Rule("POST", "/api/alarm/alarms/{alarm_id}/dispatch", frozenset({A, CS})),
    Rule("POST", "/api/alarm/alarms/{alarm_id}/feedback", frozenset({A, EU, OM})),
    Rule("GET", "/api/alarm/alarms/{alarm_id}/attachments/{attachment_id}", PEOPLE),
    Rule("POST", "/api/alarm/alarms/{alarm_id}/verify", HANDLERS),
    Rule("POST", "/api/alarm/alarms/{alarm_id}/close", HANDLERS),
    Rule("POST", "/api/alarm/alarms/{alarm_id}/comments", PEOPLE),
    Rule("GET", "/api/alarm/statistics", PEOPLE, "alarms"),
    Rule("POST", "/api/alarm/filings", frozenset({A, CS, DO, EU, OM})),
    Rule("GET", "/api/alarm/filings", PEOPLE),
    Rule("POST", "/api/alarm/filings/{filing_id}/approve", HANDLERS),
    Rule("POST", "/api/alarm/filings/{filing_id}/reject", HANDLERS),
    Rule("POST", "/api/alarm/filings/{filing_id}/withdraw", PEOPLE),
    Rule("GET", "/api/alarm/states", PEOPLE, "states"),
    Rule("GET", "/api/alarm/overview", PEOPLE, "states"),
    Rule("GET", "/api/alarm/states/history", PEOPLE, "states"),
    Rule("GET", "/api/alarm/thresholds", PEOPLE),
    Rule("POST", "/api/alarm/learning/run", frozenset({A, OM})),
    Rule("GET", "/api/alarm/rules", PEOPLE),
    Rule("PUT", "/api/alarm/rules/{code}", frozenset({A, CS})),
    Rule("GET", "/api/alarm/notifications", HANDLERS),
    Rule("GET", "/api/alarm/district-contacts", HANDLERS),
    Rule("PUT", "/api/alarm/district-contacts", frozenset({A, CS})),
]

_INGEST = [
    Rule("GET", "/api/ingest-hj212/devices", PEOPLE, "devices"),
    Rule("GET", "/api/ingest-hj212/devices/{mn}", PEOPLE, "devices"),
    Rule("GET", "/api/ingest-hj212/unregistered", frozenset({A, CS, OM})),
    Rule("POST", "/api/ingest-hj212/devices/{mn}/commands", frozenset({A, OM})),
    Rule("GET", "/api/ingest-hj212/commands/{command_id}", PEOPLE),
    # The raw-frame archive: frames in scope for everyone; replays are O&M's (they re-publish).
    Rule("GET", "/api/ingest-hj212/archive/frames", PEOPLE),
    Rule("GET", "/api/ingest-hj212/archive/frames.txt", PEOPLE),
    Rule("GET", "/api/ingest-hj212/archive/frames/{frame_id}", PEOPLE),
    Rule("GET", "/api/ingest-hj212/archive/frames/{frame_id}/raw", PEOPLE),
    Rule("POST", "/api/ingest-hj212/archive/replays", frozenset({A, OM})),
    Rule("GET", "/api/ingest-hj212/archive/replays", frozenset({A, OM})),
    Rule("GET", "/api/ingest-hj212/archive/replays/{job_id}", frozenset({A, OM})),
    Rule("POST", "/api/ingest-hj212/archive/replays/{job_id}/cancel", frozenset({A, OM})),
]

READERS = frozenset({A, CS, DO, EU, OM})
"""Who reads reporting's curves and statistics (reporting `READERS`; not the auditor)."""
BUREAU = frozenset({A, CS, DO})
"""Bureau staff: reports and subscriptions (reporting `BUREAU`)."""
INTERNAL = frozenset({A, CS, DO, OM})
"""People who read reporting's datasets without a key (reporting `INTERNAL_ROLES`)."""

_CONTROL_PLAN = [
    # Reads of the heavy-pollution-weather plans (lists, orders, tasks, compliance, reports).
    Rule("GET", "/api/control-plan/**", PEOPLE, "control"),
    # The reduction list: the bureau edits it (districts within their scope).
    Rule("POST", "/api/control-plan/measures", BUREAU),
    Rule("POST", "/api/control-plan/measures/import", BUREAU),
    Rule("PATCH", "/api/control-plan/measures/{measure_id}", BUREAU),
    Rule("DELETE", "/api/control-plan/measures/{measure_id}", BUREAU),
    # Alert orders: proposed and approved by city supervisors (four eyes, two people).
    Rule("POST", "/api/control-plan/alerts", frozenset({A, CS})),
    Rule("POST", "/api/control-plan/alerts/{alert_id}/amend", frozenset({A, CS})),
    Rule("POST", "/api/control-plan/alerts/{alert_id}/lift", frozenset({A, CS})),
    *(
        Rule(
            "POST",
            f"/api/control-plan/alerts/{{alert_id}}/changes/{{change_id}}/{step}",
            frozenset({A, CS}),
        )
        for step in ("approve", "reject", "withdraw")
    ),
    Rule("POST", "/api/control-plan/compliance/run", frozenset({A, CS, OM})),
    Rule("PUT", "/api/control-plan/holidays/{day}", frozenset({A, CS})),
    Rule("DELETE", "/api/control-plan/holidays/{day}", frozenset({A, CS})),
    # Supervision issues: the enterprise, its district or O&M answer; the bureau verifies.
    Rule("POST", "/api/control-plan/issues/{issue_id}/feedback", READERS),
    Rule("POST", "/api/control-plan/issues/{issue_id}/verify", BUREAU),
    Rule("POST", "/api/control-plan/issues/{issue_id}/close", BUREAU),
    Rule("POST", "/api/control-plan/issues/{issue_id}/comments", PEOPLE),
    Rule("POST", "/api/control-plan/admin/synthetic-list", ADMINS),
]

_REPORTING = [
    Rule("GET", "/api/reporting/series/{subject_kind}/{subject_id}", READERS),
    Rule("GET", "/api/reporting/timelines/enterprises/{enterprise_id}", READERS),
    Rule("GET", "/api/reporting/history/partitions", frozenset({A, CS, OM})),
    Rule("GET", "/api/reporting/history/rejects", frozenset({A, CS, OM})),
    Rule("GET", "/api/reporting/statistics", READERS),
    Rule("GET", "/api/reporting/report-definitions", BUREAU),
    Rule("GET", "/api/reporting/reports", BUREAU),
    Rule("POST", "/api/reporting/reports", BUREAU),
    Rule("GET", "/api/reporting/reports/inbox", BUREAU),
    Rule("GET", "/api/reporting/reports/{report_id}", BUREAU),
    Rule("GET", "/api/reporting/reports/{report_id}/xlsx", BUREAU),
    Rule("GET", "/api/reporting/reports/{report_id}/pdf", BUREAU),
    Rule("GET", "/api/reporting/subscriptions", BUREAU),
    Rule("POST", "/api/reporting/subscriptions", BUREAU),
    Rule("DELETE", "/api/reporting/subscriptions/{subscription_id}", BUREAU),
    Rule("GET", "/api/reporting/datasets", PEOPLE, ANY_KEY),
    *(
        Rule("GET", f"/api/reporting/datasets/{name}", INTERNAL, grant)
        for name, grant in REPORTING_DATASETS.items()
    ),
]

_OPS = [
    # The platform's own health (the status page): the bureau's supervisors and O&M staff.
    Rule("GET", "/api/ops/status", frozenset({A, CS, OM})),
]

# The O&M desk (services/ops, docs/ops-desk.md): incidents are the platform's faults, read by
# bureau staff, O&M and auditors, worked by O&M, verified by the city bureau; requests and
# knowledge-base reads are open to every person, filtered by scope and visibility.
OPS_READERS = frozenset({A, CS, DO, OM, AU})
OPS_REPORTERS = frozenset({A, CS, DO, OM})
OPS_OPERATORS = frozenset({A, OM})
OPS_EDITORS = frozenset({A, CS, OM})
OPS_REQUESTERS = frozenset({A, CS, DO, EU, OM})
_INCIDENT = "/api/ops/incidents/{incident_id}"
_REQUEST = "/api/ops/requests/{request_id}"

_OPS = [
    Rule("GET", "/api/ops/status", frozenset({A, CS, OM}), note="the status page"),
    Rule("POST", "/api/ops/alertmanager", NOT_SERVED, note="service port, Alertmanager's token"),
    Rule("GET", "/api/ops/incidents", OPS_READERS),
    Rule("POST", "/api/ops/incidents", OPS_REPORTERS),
    Rule("GET", "/api/ops/incidents.xlsx", OPS_READERS),
    Rule("GET", _INCIDENT, OPS_READERS),
    Rule("PATCH", _INCIDENT, OPS_OPERATORS),
    Rule("POST", f"{_INCIDENT}/respond", OPS_OPERATORS),
    Rule("POST", f"{_INCIDENT}/workaround", OPS_OPERATORS),
    Rule("POST", f"{_INCIDENT}/root-cause", OPS_OPERATORS),
    Rule("POST", f"{_INCIDENT}/resolve", OPS_OPERATORS),
    Rule("POST", f"{_INCIDENT}/verify", frozenset({A, CS})),
    Rule("POST", f"{_INCIDENT}/reopen", OPS_EDITORS),
    Rule("POST", f"{_INCIDENT}/cancel", OPS_OPERATORS),
    Rule("POST", f"{_INCIDENT}/comments", OPS_REPORTERS),
    Rule("PUT", f"{_INCIDENT}/review", OPS_OPERATORS),
    Rule("GET", f"{_INCIDENT}/similar", OPS_READERS),
    Rule("POST", f"{_INCIDENT}/articles", OPS_EDITORS),
    Rule("DELETE", f"{_INCIDENT}/articles/{{article_id}}", OPS_EDITORS),
    Rule("GET", "/api/ops/requests", PEOPLE),
    Rule("POST", "/api/ops/requests", OPS_REQUESTERS),
    Rule("GET", "/api/ops/requests.xlsx", PEOPLE),
    Rule("GET", _REQUEST, PEOPLE),
    Rule("POST", f"{_REQUEST}/accept", OPS_OPERATORS),
    Rule("POST", f"{_REQUEST}/reply", OPS_OPERATORS),
    Rule("POST", f"{_REQUEST}/resolve", OPS_OPERATORS),
    Rule("POST", f"{_REQUEST}/reject", OPS_OPERATORS),
    Rule("POST", f"{_REQUEST}/close", OPS_REQUESTERS),
    Rule("POST", f"{_REQUEST}/reopen", OPS_REQUESTERS),
    Rule("POST", f"{_REQUEST}/withdraw", OPS_REQUESTERS),
    Rule("POST", f"{_REQUEST}/comments", OPS_REQUESTERS),
    Rule("GET", f"{_REQUEST}/similar", PEOPLE),
    Rule("POST", f"{_REQUEST}/articles", OPS_EDITORS),
    Rule("DELETE", f"{_REQUEST}/articles/{{article_id}}", OPS_EDITORS),
    Rule("GET", "/api/ops/kb/articles", PEOPLE),
    Rule("POST", "/api/ops/kb/articles", OPS_EDITORS),
    Rule("GET", "/api/ops/kb/articles.xlsx", PEOPLE),
    Rule("GET", "/api/ops/kb/articles/{article_id}", PEOPLE),
    Rule("PATCH", "/api/ops/kb/articles/{article_id}", OPS_EDITORS),
    Rule("GET", "/api/ops/kb/articles/{article_id}/versions", PEOPLE),
    Rule("GET", "/api/ops/kb/categories", PEOPLE),
    Rule("GET", "/api/ops/reports/abnormal-events", OPS_READERS),
    Rule("GET", "/api/ops/reports/abnormal-events.xlsx", OPS_READERS),
    Rule("GET", "/api/ops/reports/abnormal-events.pdf", OPS_READERS),
    Rule("POST", "/api/ops/reports", OPS_EDITORS),
    Rule("GET", "/api/ops/reports", OPS_READERS),
    Rule("GET", "/api/ops/reports.xlsx", OPS_READERS),
    Rule("GET", "/api/ops/reports/{report_id}", OPS_READERS),
    Rule("GET", "/api/ops/reports/{report_id}/report.xlsx", OPS_READERS),
    Rule("GET", "/api/ops/reports/{report_id}/report.pdf", OPS_READERS),
    Rule("GET", "/api/ops/contacts", OPS_EDITORS),
    Rule("POST", "/api/ops/contacts", OPS_EDITORS),
    Rule("GET", "/api/ops/contacts.xlsx", OPS_EDITORS),
    Rule("PATCH", "/api/ops/contacts/{contact_id}", OPS_EDITORS),
    Rule("DELETE", "/api/ops/contacts/{contact_id}", OPS_EDITORS),
    Rule("GET", "/api/ops/notifications", OPS_EDITORS),
    Rule("GET", "/api/ops/notifications.xlsx", OPS_EDITORS),
    Rule("GET", "/api/ops/sla", PEOPLE),
    Rule("GET", "/api/ops/calendar", PEOPLE),
    Rule("PUT", "/api/ops/calendar/days/{day}", frozenset({A, CS})),
    Rule("DELETE", "/api/ops/calendar/days/{day}", frozenset({A, CS})),
]

MATRIX: tuple[Rule, ...] = (
    *_OPERATIONS,
    *_AUTH,
    *_REGISTRY,
    *_VALIDATION,
    *_ALARM,
    *_INGEST,
    *_CONTROL_PLAN,
    *_REPORTING,
    *_OPS,
)


class Matcher:
    """Finds the rule of a request: the most specific rule whose method and path match."""

    def __init__(self, rules: Iterable[Rule] = MATRIX) -> None:
        self.rules = tuple(rules)
        by_service: dict[str, list[Rule]] = {}
        wildcard: list[Rule] = []
        for rule in self.rules:
            (wildcard if rule.service == "*" else by_service.setdefault(rule.service, [])).append(
                rule
            )
        self._wildcard: list[Rule] = sorted(wildcard, key=lambda r: r.specificity)
        self._by_service: dict[str, list[Rule]] = {
            name: sorted(rules, key=lambda r: r.specificity) for name, rules in by_service.items()
        }

    def match(self, method: str, path: str) -> Rule | None:
        """The rule for `method path` (`HEAD` reads as `GET`), or None when none is written."""
        method = "GET" if method == "HEAD" else method
        service = path.split("/", 3)[2] if path.count("/") >= 2 else ""
        for rule in (*self._wildcard, *self._by_service.get(service, [])):
            if rule.method == method and rule.pattern.match(path):
                return rule
        return None
