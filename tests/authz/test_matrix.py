"""The role × endpoint matrix: every route of every service, called through the gateway as
every role (a real account each), as a partner API key and as nobody, answers exactly what
the permission matrix (`ecowatt_auth.authz.matrix`) says — and no route is missing from it.
Scope filters hold whatever the query string asks for.

How a call is judged: a role the matrix denies must get 403; a role it allows must get
neither 401 nor 403 (a 404 for the probe id, or a 422 for a deliberately malformed body,
shows the call got past the role checks). Allowed callers send a malformed body so that
nothing is changed; denied callers send a valid one (built from the OpenAPI schema), so
that a role check made inside a handler cannot hide behind a validation error.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from ecowatt_auth.accounts.service import get_user, identity_of
from ecowatt_auth.authz.matrix import DATASETS, MATRIX, Matcher, Rule
from ecowatt_kernel.excel import load_workbook_bytes
from ecowatt_kernel.identity import Role
from ecowatt_standalone.gateway import SERVICES

from tests.services.auth.conftest import Platform, isolated_redis_url, start_platform

pytestmark = pytest.mark.integration

PEOPLE_ROLES = (
    Role.ADMIN,
    Role.CITY_SUPERVISOR,
    Role.DISTRICT_OFFICER,
    Role.ENTERPRISE_USER,
    Role.OM_OPERATOR,
    Role.AUDITOR,
)
SCOPES = {
    Role.DISTRICT_OFFICER: {"kind": "districts", "districts": ["610112"]},
    Role.ENTERPRISE_USER: {"kind": "enterprises", "enterprises": ["probe-enterprise"]},
}
OPERATIONS = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc")


@pytest.fixture(scope="module")
async def everything(database_url: str, redis_url: str) -> AsyncIterator[Platform]:
    from ecowatt_kernel.db import scratch_database

    saved = {k: os.environ.get(k) for k in ("ECOWATT_HJ212_HOST", "ECOWATT_HJ212_PORT")}
    os.environ["ECOWATT_HJ212_HOST"] = "127.0.0.1"
    os.environ["ECOWATT_HJ212_PORT"] = "0"  # a running `make run` may hold 9212
    try:
        async with scratch_database(database_url) as url:
            async for platform in start_platform(url, isolated_redis_url(redis_url), SERVICES):
                yield platform
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def service_routes(platform: Platform) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(method, gateway path, operation, components) of every route of every service."""
    routes = []
    for name, app in platform.apps.items():
        document = app.openapi()
        components = document.get("components", {}).get("schemas", {})
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                routes.append((method.upper(), f"/api/{name}{path}", operation, components))
        for path in OPERATIONS:
            if path not in document["paths"]:
                routes.append(("GET", f"/api/{name}{path}", {}, components))
    return routes


def test_every_route_is_in_the_matrix_and_every_row_is_a_route(everything: Platform) -> None:
    matcher = Matcher()
    routes = service_routes(everything)
    missing = [f"{m} {p}" for m, p, _, _ in routes if matcher.match(m, p) is None]
    assert not missing, (
        "routes missing from the permission matrix (services/auth/ecowatt_auth/authz/matrix.py):\n"
        + "\n".join(missing)
    )
    existing = {(m, p) for m, p, _, _ in routes}
    stale = [
        f"{r.method} {r.path}"
        for r in MATRIX
        if "*" not in r.path and (r.method, r.path) not in existing
    ]
    assert not stale, "matrix rows without a route:\n" + "\n".join(stale)


# ----------------------------------------------------------------------------- bodies


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def example(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> Any:
    """A minimal value valid for `schema` (required fields only)."""
    schema = _resolve(schema, components)
    if depth > 8:
        return None
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if _resolve(o, components).get("type") != "null"]
            return example(options[0], components, depth + 1) if options else None
    if "allOf" in schema:
        return example(schema["allOf"][0], components, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {
            name: example(prop, components, depth + 1)
            for name, prop in schema.get("properties", {}).items()
            if name in schema.get("required", [])
        }
    if kind == "array":
        count = schema.get("minItems", 0)
        return [example(schema.get("items", {}), components, depth + 1) for _ in range(count)]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1)
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return False
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date":
            return (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
        if fmt == "date-time":
            return (datetime.now(UTC) + timedelta(days=30)).isoformat()
        if "pattern" in schema and schema["pattern"] == r"^\d{6}$":
            return "123456"
        return "x" * max(int(schema.get("minLength", 1)), 1)
    return {}


def concrete(path: str) -> str:
    """The path with each `{param}` replaced by a probe value nothing matches."""
    parts = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            parts.append("987654" if part == "{seq}" else "probe-0")
        else:
            parts.append(part)
    return "/".join(parts)


def request_for(
    method: str, operation: dict[str, Any], components: dict[str, Any], *, valid: bool
) -> dict[str, Any]:
    body = operation.get("requestBody")
    if body is None or method in ("GET", "DELETE"):
        return {}
    content = body.get("content", {})
    if "application/json" not in content:
        return {"json": []}  # a form endpoint sent JSON: a 422 once past the role checks
    if not valid:
        return {"json": []}
    return {"json": example(content["application/json"]["schema"], components)}


# ----------------------------------------------------------------------------- callers


class Callers:
    """A real account per role (bearer tokens signed for it), a browser session per role for
    the session endpoints, an API key with every dataset."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.accounts: dict[Role, tuple[str, str, str]] = {}
        self.api_key: str = ""

    async def setup(self) -> None:
        for role in PEOPLE_ROLES:
            if role is Role.ADMIN:
                continue
            self.accounts[role] = await self.platform.person(role, SCOPES.get(role))
        admin = await self.platform.admin()
        users = (await admin.get("/api/auth/users", params={"q": "admin"})).json()["items"]
        self.accounts[Role.ADMIN] = (users[0]["id"], "admin", "")
        key = await admin.post(
            "/api/auth/api-keys",
            json={
                "name": "矩阵测试",
                "datasets": sorted(DATASETS),
                "all_districts": True,
                "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
                "rate_per_minute": 100_000,
                "quota_per_day": 1_000_000,
            },
        )
        assert key.status_code == 201, key.text
        self.api_key = key.json()["key"]

    async def headers(self, role: Role) -> dict[str, str]:
        """A fresh bearer token of the role's account (a revocation hits only that one)."""
        runtime = self.platform.runtime
        async with runtime.context.database.session() as session:
            row = await get_user(session, user_id=self.accounts[role][0])
        token = runtime.signer.sign(identity_of(row, runtime.view))
        return {"Authorization": f"Bearer {token}"}

    async def session(self, role: Role) -> httpx.AsyncClient:
        """A browser session of the role's account (administrator: the first admin)."""
        if role is Role.ADMIN:
            return await self.platform.admin()
        _, username, password = self.accounts[role]
        client = self.platform.client()
        response = await self.platform.login(client, username, password)
        assert response.status_code == 200, response.text
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        return client


def expected(rule: Rule, caller: str) -> str:
    """`denied` (403), `allowed` (not 401/403), `unauthenticated` (401) or `absent` (404)."""
    if not rule.served:
        return "absent"
    if rule.public:
        return "allowed"
    if caller == "anonymous":
        return "unauthenticated"
    if caller == "partner":
        return "allowed" if rule.allows_key(DATASETS) else "denied"
    return "allowed" if rule.allows(Role(caller)) else "denied"


def judge(outcome: str, status: int) -> bool:
    return {
        "denied": status == 403,
        "allowed": status not in (401, 403),
        "unauthenticated": status == 401,
        "absent": status == 404,
    }[outcome]


async def test_each_role_gets_exactly_what_the_matrix_says(everything: Platform) -> None:
    platform = everything
    callers = Callers(platform)
    await callers.setup()
    matcher = Matcher()
    client = platform.client()
    wrong: list[str] = []
    checked = 0
    for method, path, operation, components in service_routes(platform):
        rule = matcher.match(method, path)
        assert rule is not None, f"{method} {path} is not in the matrix"
        url = concrete(path)
        for caller in ("anonymous", "partner", *(r.value for r in PEOPLE_ROLES)):
            outcome = expected(rule, caller)
            kwargs = request_for(method, operation, components, valid=outcome != "allowed")
            headers: dict[str, str] = {}
            http = client
            if caller == "partner":
                headers = {"X-API-Key": callers.api_key}
            elif caller != "anonymous":
                if path.startswith("/api/auth/session") and outcome == "allowed":
                    http = await callers.session(Role(caller))
                else:
                    headers = await callers.headers(Role(caller))
            response = await http.request(method, url, headers=headers, **kwargs)
            checked += 1
            if not judge(outcome, response.status_code):
                wrong.append(
                    f"{caller:17} {method:6} {url}: expected {outcome}, got "
                    f"{response.status_code} {response.text[:160]}"
                )
    assert checked > 8 * 140
    assert not wrong, f"{len(wrong)} answers differ from the matrix:\n" + "\n".join(wrong)


async def test_scope_filters_hold_whatever_the_query_asks(everything: Platform) -> None:
    platform = everything
    admin = await platform.admin()
    tag = uuid.uuid4().hex[:6]
    ids = {}
    for district in ("610112", "610113"):
        created = await admin.post(
            "/api/registry/enterprises",
            json={
                "name": f"范围测试{tag}{district}",
                "district_code": district,
                "performance_grade": "C",
            },
        )
        assert created.status_code == 201, created.text
        ids[district] = created.json()["id"]
    officer = platform.client()
    _, username, password = await platform.person(
        Role.DISTRICT_OFFICER, {"kind": "districts", "districts": ["610112"]}
    )
    assert (await platform.login(officer, username, password)).status_code == 200
    asked = [
        {},
        {"district": "610113"},
        {"q": f"范围测试{tag}610113"},
        {"district": "610113", "q": tag, "page_size": 500},
    ]
    for params in asked:
        listed = await officer.get("/api/registry/enterprises", params=params)
        assert listed.status_code == 200
        districts = {e["district_code"] for e in listed.json()["items"]}
        assert districts <= {"610112"}, (params, districts)
    other = await officer.get(f"/api/registry/enterprises/{ids['610113']}")
    assert other.status_code == 404  # out of scope looks like absent: nothing leaks
    own = await officer.get(f"/api/registry/enterprises/{ids['610112']}")
    assert own.status_code == 200
    for params, shown in (({}, {"610112"}), ({"district": "610113"}, set())):
        export = await officer.get("/api/registry/enterprises.xlsx", params=params)
        assert export.status_code == 200
        cells = {
            str(value)
            for sheet in load_workbook_bytes(export.content).worksheets
            for row in sheet.iter_rows(values_only=True)
            for value in row
        }
        assert {d for d in ids if f"范围测试{tag}{d}" in cells} == shown, params

    enterprise = platform.client()
    _, username, password = await platform.person(
        Role.ENTERPRISE_USER, {"kind": "enterprises", "enterprises": [ids["610112"]]}
    )
    assert (await platform.login(enterprise, username, password)).status_code == 200
    for params in ({}, {"district": "610113"}, {"q": tag}):
        listed = await enterprise.get("/api/registry/enterprises", params=params)
        assert {e["id"] for e in listed.json()["items"]} <= {ids["610112"]}

    key = await admin.post(
        "/api/auth/api-keys",
        json={
            "name": "区县合作方",
            "datasets": ["archive"],
            "districts": ["610112"],
            "expires_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
        },
    )
    partner = {"X-API-Key": key.json()["key"]}
    for params in ({}, {"district": "610113"}):
        listed = await platform.client().get(
            "/api/registry/enterprises", params=params, headers=partner
        )
        assert listed.status_code == 200
        assert {e["district_code"] for e in listed.json()["items"]} <= {"610112"}
    alarms = await platform.client().get("/api/alarm/alarms", headers=partner)
    assert alarms.status_code == 403  # not one of the key's datasets


async def test_every_request_leaves_exactly_one_audit_event(everything: Platform) -> None:
    """Every call through the gateway — each state-changing route of every service, allowed
    or refused, and reads — is one `audit.events` message (found by its trace id); services
    that write their own event for an action (logins, accounts, device commands) do not
    cause a second one."""
    platform = everything
    callers = Callers(platform)
    await callers.setup()
    client = platform.client()
    sent: dict[str, str] = {}
    for method, path, operation, components in service_routes(platform):
        rule = Matcher().match(method, path)
        assert rule is not None
        if not rule.served:
            continue
        for role in (Role.ADMIN, Role.ENTERPRISE_USER):
            if method == "GET" and role is Role.ENTERPRISE_USER:
                continue
            trace = uuid.uuid4().hex
            outcome = expected(rule, role.value)
            kwargs = request_for(method, operation, components, valid=outcome != "allowed")
            headers = {"X-Trace-Id": trace, **await callers.headers(role)}
            response = await client.request(method, concrete(path), headers=headers, **kwargs)
            assert response.headers["x-trace-id"] == trace
            sent[trace] = f"{role.value} {method} {path} → {response.status_code}"
    # a real device command: ingest writes its own, richer event
    admin = await callers.headers(Role.ADMIN)
    mn = f"MATRIX{uuid.uuid4().hex[:10].upper()}"
    owner = await client.post(
        "/api/registry/enterprises",
        json={"name": "命令审计测试", "district_code": "610112", "performance_grade": "C"},
        headers=admin,
    )
    device = await client.post(
        "/api/registry/devices",
        json={"mn": mn, "enterprise_id": owner.json()["id"], "password": "123456"},
        headers=admin,
    )
    assert device.status_code == 201, device.text

    async def known() -> bool:
        found = await client.get(f"/api/ingest-hj212/devices/{mn}", headers=admin)
        return found.status_code == 200

    await platform.wait_for(known)
    trace = uuid.uuid4().hex
    command = await client.post(
        f"/api/ingest-hj212/devices/{mn}/commands",
        json={"cn": "1011"},
        headers={"X-Trace-Id": trace, **admin},
    )
    assert command.status_code == 202, command.text
    assert "x-ecowatt-audited" not in command.headers  # the gateway keeps it to itself
    sent[trace] = f"device command → {command.status_code}"

    async def stored() -> dict[str, int] | None:
        rows = await platform.audit_rows()
        counts: dict[str, int] = {}
        for row in rows:
            if row["trace_id"] in sent:
                counts[row["trace_id"]] = counts.get(row["trace_id"], 0) + 1
        return counts if len(counts) == len(sent) else None

    counts = await platform.wait_for(stored, limit_s=60)
    twice = [f"{sent[t]}: {n} events" for t, n in counts.items() if n != 1]
    assert not twice, "\n".join(twice)
    rows = {r["trace_id"]: r for r in await platform.audit_rows()}
    denied = [r for t, r in rows.items() if t in sent and "enterprise_user" in sent[t]]
    assert any(r["outcome"] == "denied" and r["details"]["status"] == 403 for r in denied)
    assert rows[trace]["action"] == "device.command"  # the service's event, not the gateway's
    assert rows[trace]["details"]["cn"] == "1011"
