"""Bounds on everything a request carries, for every service at once.

The app factory installs `guard_request` as a dependency of every route, so that each
service's API refuses, with a 422 problem naming the parameter, before any handler runs:

- a query parameter its OpenAPI operation does not declare (refused, not ignored: a
  misspelled filter on a list or an export would otherwise silently widen the result);
- a control character (C0, DEL, C1 — NUL above all, which PostgreSQL cannot store) in a
  query parameter's name or value or in a path parameter;
- an integer parameter outside 64 bits (no column can hold it), a non-finite number;
- a NUL (`\\u0000`) inside a JSON body (other control characters, such as line breaks in a
  reason, are allowed there; logs escape them, see `ecowatt_kernel.logging`).

The OpenAPI document is the contract: what it publishes is what the guard lets through, so
a parameter added to a route is accepted the moment it is declared. Request bodies are
capped by the app (`http_max_body_bytes`, 413); uploads declare their own limits
(`ecowatt_kernel.uploads`).

Behind these checks, `ecowatt_kernel.problems` answers a value that PostgreSQL refuses as
data, or that overflows while being converted, with a 422 problem (never a 500).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from ecowatt_kernel.problems import Problem

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "RequestRules",
    "find_control_character",
    "guard_request",
]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A JSON string escape for NUL that is not itself an escaped backslash followed by "u0000".
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def find_control_character(text: str) -> str | None:
    """The first control character of `text` as `U+XXXX`, or None."""
    found = _CONTROL.search(text)
    return f"U+{ord(found.group()):04X}" if found else None


def _invalid(location: str, name: str, message: str, kind: str) -> Problem:
    return Problem(
        f"the request is invalid: {location} parameter {name!r} {message}",
        status=422,
        type_suffix="validation-error",
        errors=[{"loc": [location, name], "msg": message, "type": kind}],
    )


@dataclass(frozen=True)
class RequestRules:
    """What one operation accepts, read from its OpenAPI entry."""

    query: frozenset[str]
    integers: frozenset[str]
    numbers: frozenset[str]
    json_body: bool

    @classmethod
    def of(cls, operation: Mapping[str, Any], components: Mapping[str, Any]) -> RequestRules:
        query: set[str] = set()
        integers: set[str] = set()
        numbers: set[str] = set()
        for parameter in operation.get("parameters", ()):
            name = parameter["name"]
            if parameter.get("in") == "query":
                query.add(name)
            kinds = set(_schema_types(parameter.get("schema", {}), components))
            if "integer" in kinds:
                integers.add(name)
            elif "number" in kinds:
                numbers.add(name)
        content = operation.get("requestBody", {}).get("content", {})
        return cls(
            query=frozenset(query),
            integers=frozenset(integers),
            numbers=frozenset(numbers),
            json_body=any("json" in media for media in content),
        )


_NOTHING = RequestRules(frozenset(), frozenset(), frozenset(), json_body=False)


def _schema_types(
    schema: Mapping[str, Any], components: Mapping[str, Any], depth: int = 0
) -> Iterator[str]:
    if depth > 8:
        return
    if "$ref" in schema:
        target = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
        yield from _schema_types(target, components, depth + 1)
        return
    kind = schema.get("type")
    if isinstance(kind, str):
        yield kind
    for key in ("anyOf", "oneOf", "allOf"):
        for part in schema.get(key, ()):
            yield from _schema_types(part, components, depth + 1)
    if isinstance(schema.get("items"), Mapping):
        yield from _schema_types(schema["items"], components, depth + 1)


def _rules_for(request: Request) -> RequestRules:
    """The rules of the matched route, built once per app from its OpenAPI document."""
    app = request.app
    table: dict[tuple[str, str], RequestRules] | None = getattr(app.state, "request_rules", None)
    if table is None:
        document = app.openapi()
        components = document.get("components", {}).get("schemas", {})
        table = {
            (path, method.upper()): RequestRules.of(operation, components)
            for path, item in document.get("paths", {}).items()
            for method, operation in item.items()
            if isinstance(operation, Mapping)
        }
        app.state.request_rules = table
    route = request.scope.get("route")
    path = str(getattr(route, "path_format", None) or getattr(route, "path", ""))
    return table.get((path, request.method.upper()), _NOTHING)


def _check_integer(name: str, value: str, location: str) -> None:
    try:
        number = int(value.strip())
    except ValueError:
        return  # not an integer at all: the route's own validation says so
    if not INT64_MIN <= number <= INT64_MAX:
        raise _invalid(location, name, "is out of range (64-bit integers)", "int_out_of_range")


def _check_number(name: str, value: str, location: str) -> None:
    try:
        number = float(value)
    except ValueError:
        return
    if not math.isfinite(number):
        raise _invalid(location, name, "must be a finite number", "finite_number")


async def guard_request(request: Request) -> None:
    """Dependency of every route (installed by the app factory): see the module docstring."""
    rules = _rules_for(request)
    for name, value in request.path_params.items():
        text = str(value)
        if found := find_control_character(text):
            raise _invalid("path", name, f"contains a control character ({found})", "control")
        if name in rules.integers:
            _check_integer(name, text, "path")
    for name, value in request.query_params.multi_items():
        if found := find_control_character(name):
            raise _invalid(
                "query", name, f"has a control character ({found}) in its name", "control"
            )
        if name not in rules.query:
            accepted = ", ".join(sorted(rules.query)) or "none"
            raise _invalid(
                "query",
                name,
                f"is not a parameter of this operation (accepted: {accepted})",
                "unknown_parameter",
            )
        if found := find_control_character(value):
            raise _invalid("query", name, f"contains a control character ({found})", "control")
        if name in rules.integers:
            _check_integer(name, value, "query")
        elif name in rules.numbers:
            _check_number(name, value, "query")
    if rules.json_body and "json" in request.headers.get("content-type", ""):
        body = await request.body()
        if _JSON_NUL.search(body.decode("utf-8", errors="replace")):
            raise Problem(
                "the request is invalid: text in the JSON body contains NUL (\\u0000)",
                status=422,
                type_suffix="validation-error",
                errors=[{"loc": ["body"], "msg": "contains NUL (\\u0000)", "type": "control"}],
            )
