"""The merged OpenAPI document of every service behind the gateway (`/api/openapi.json`).

Each service's paths are prefixed with `/api/<service>`, its schema names with the service
(two services may both have a `RuleOut`), its operation ids with the service. From the
permission matrix every operation gets `x-ecowatt-roles` (who may call it) and, when API
keys may read it, `x-ecowatt-dataset` and the `partner` tag; public operations need no
credentials, all others accept a session cookie, a bearer token or an API key. Operations
the gateway does not serve (health, readiness) are left out.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ecowatt_auth.authz.matrix import DATASETS, Matcher

__all__ = ["PARTNER_TAG", "merge_openapi"]

PARTNER_TAG = "partner"
_SCHEMA_REF = "#/components/schemas/"

SECURITY_SCHEMES = {
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "__Host-ecowatt_session",
        "description": "The browser session from `POST /api/auth/session` (the name is "
        "`ecowatt_session` on plain-HTTP development servers). Unsafe methods also need the "
        "session's CSRF token in `X-CSRF-Token`.",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT (EdDSA)",
        "description": "A token from `POST /api/auth/token` (scripts).",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A partner API key `ewk_<id>_<secret>`: GET on the endpoints of its "
        "datasets only (tag `partner`, `x-ecowatt-dataset`).",
    },
}


def _rename_refs(node: Any, service: str) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_SCHEMA_REF):
                out[key] = _SCHEMA_REF + f"{service}__{value[len(_SCHEMA_REF) :]}"
            else:
                out[key] = _rename_refs(value, service)
        return out
    if isinstance(node, list):
        return [_rename_refs(v, service) for v in node]
    return node


def merge_openapi(
    documents: Mapping[str, dict[str, Any]], *, matcher: Matcher, version: str = "0.1.0"
) -> dict[str, Any]:
    """One document from each service's (name → document)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    tags: list[dict[str, str]] = [
        {
            "name": PARTNER_TAG,
            "description": "合作方数据接口: what a partner's API key may read (by dataset: "
            + ", ".join(f"{code} {d.name}" for code, d in DATASETS.items())
            + ").",
        }
    ]
    for service, document in sorted(documents.items()):
        document = _rename_refs(copy.deepcopy(document), service)
        for name, schema in (document.get("components", {}).get("schemas", {})).items():
            schemas[f"{service}__{name}"] = schema
        for path, operations in document.get("paths", {}).items():
            full = f"/api/{service}{path}"
            kept: dict[str, Any] = {}
            for method, operation in operations.items():
                if not isinstance(operation, dict):
                    kept[method] = operation
                    continue
                rule = matcher.match(method.upper(), full)
                if rule is not None and not rule.served:
                    continue
                operation["operationId"] = (
                    f"{service}__{operation.get('operationId', method + path)}"
                )
                operation["tags"] = [
                    f"{service}: {t}" for t in operation.get("tags") or ["default"]
                ]
                if rule is None:
                    operation["x-ecowatt-roles"] = "not in the permission matrix"
                elif rule.public:
                    operation["security"] = []
                    operation["x-ecowatt-roles"] = "public"
                else:
                    operation["x-ecowatt-roles"] = sorted(rule.roles)
                    if rule.dataset and method == "get":
                        operation["x-ecowatt-dataset"] = rule.dataset
                        operation["tags"].insert(0, PARTNER_TAG)
                operation.setdefault("responses", {})
                if rule is None or not rule.public:
                    operation["responses"].setdefault(
                        "401", {"description": "no or invalid credentials (problem details)"}
                    )
                    operation["responses"].setdefault(
                        "403", {"description": "not allowed for this role, scope or key (problem)"}
                    )
                    operation["responses"].setdefault(
                        "429", {"description": "rate limit or daily quota (`Retry-After`)"}
                    )
                kept[method] = operation
            if kept:
                paths[full] = kept
        for tag in document.get("tags", []) or []:
            tags.append({**tag, "name": f"{service}: {tag['name']}"})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "EcoWatt API",
            "version": version,
            "description": "涉气排污单位治理设施用电监管平台 — every service behind the gateway. "
            "People log in (`POST /api/auth/session` for browsers, `POST /api/auth/token` for "
            "scripts); partners send an API key in `X-API-Key`. Errors are RFC 9457 problem "
            "details. See docs/partners.md.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
        "security": [{"session": []}, {"bearer": []}, {"apiKey": []}],
        "tags": tags,
    }
