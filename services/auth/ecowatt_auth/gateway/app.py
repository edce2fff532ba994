"""The gateway: the one public entry (DESIGN §6).

For `/api/<service>/…` it

1. looks the request up in the permission matrix (public? served at all? partner dataset?),
2. authenticates the caller — browser session (cookie, CSRF token on unsafe methods, Origin
   check), bearer token (signature, revocation) or API key (hash, datasets, quota) — and
   counts the request against its rate limit,
3. forwards it with the caller's credentials replaced by a signed identity token, the
   caller's address in `X-Forwarded-For` and the trace id in `X-Trace-Id` — to an app in
   this process (standalone) or over HTTP (distributed, `python -m ecowatt_auth`),
4. writes one `audit.events` message for the request, unless the service wrote its own
   (response header `X-EcoWatt-Audited`, which the gateway removes).

Elsewhere it serves the SPA's files when a build exists (else a small login page), the
merged OpenAPI document at `/api/openapi.json` with its viewer at `/api/docs`, the identity
keys at `/.well-known/jwks.json` and its own liveness at `/healthz`. Service `/readyz` and
`/metrics` stay on the service ports (for the orchestrator and Prometheus).

It is a plain ASGI app (no framework routing on the hot path).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import mimetypes
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from ecowatt_kernel.audit import AUDITED_HEADER
from ecowatt_kernel.contracts import AuditEvent
from ecowatt_kernel.tracing import new_trace_id, trace_context
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ecowatt_auth.authz.matrix import Matcher, Rule
from ecowatt_auth.gateway.forward import Forwarder, Headers, send_problem
from ecowatt_auth.gateway.live import LiveForwarder
from ecowatt_auth.gateway.openapi import merge_openapi
from ecowatt_auth.gateway.principal import UNSAFE, Principal, Refusal
from ecowatt_auth.runtime import AuthRuntime

__all__ = ["Gateway"]

_logger = logging.getLogger(__name__)
_STATIC = Path(__file__).parent / "static"
_AUDITED = AUDITED_HEADER.lower().encode()
_DROP = frozenset(
    {
        b"authorization",
        b"x-api-key",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-csrf-token",
        b"x-trace-id",
        b"x-ecowatt-activity",
        _AUDITED,
    }
)
_SECURITY_HEADERS: Headers = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
_LOGIN_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
_SENSITIVE_QUERY = ("token", "key", "password", "secret")

RuntimeSource = Callable[[], AuthRuntime | None]
OpenApiSource = Callable[[], Awaitable[dict[str, Any] | None]]


def _outcome(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403, 429):
        return "denied"
    return "failed"


def _query_for_audit(query: bytes) -> str:
    text = query.decode("latin-1")[:500]
    if any(word in text.lower() for word in _SENSITIVE_QUERY):
        parts = []
        for pair in text.split("&"):
            name, _, _ = pair.partition("=")
            masked = any(word in name.lower() for word in _SENSITIVE_QUERY)
            parts.append(f"{name}=***" if masked else pair)
        text = "&".join(parts)
    return text


class Gateway:
    """The gateway ASGI app (see the module docstring)."""

    def __init__(
        self,
        *,
        forwarders: Mapping[str, Forwarder],
        runtime: RuntimeSource,
        lifespan_app: ASGIApp | None = None,
        openapi_sources: Mapping[str, OpenApiSource] | None = None,
        web_dir: Path | None = None,
        trusted_proxies: tuple[str, ...] = (),
        public_docs: bool = True,
        matcher: Matcher | None = None,
    ) -> None:
        self.forwarders = dict(forwarders)
        self.runtime_source = runtime
        self.lifespan_app = lifespan_app
        self.openapi_sources = dict(openapi_sources or {})
        self.web_dir = (
            web_dir if web_dir is not None and (web_dir / "index.html").is_file() else None
        )
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]
        self.public_docs = public_docs
        self.matcher = matcher or Matcher()
        self._openapi: tuple[float, dict[str, Any]] | None = None

    # ------------------------------------------------------------------- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            if self.lifespan_app is not None:
                await self.lifespan_app(scope, receive, send)
                return
            await _trivial_lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        incoming = _header(scope, b"x-trace-id")
        trace = incoming.decode("latin-1") if incoming and len(incoming) <= 64 else new_trace_id()
        with trace_context(trace):
            path: str = scope["path"]
            if path.startswith("/api/"):
                await self.api(scope, receive, send, trace)
            else:
                await self.site(scope, receive, send, trace)

    @property
    def runtime(self) -> AuthRuntime | None:
        return self.runtime_source()

    def client_ip(self, scope: Scope) -> str:
        """The caller's address; through trusted proxies, the nearest untrusted hop."""
        peer = scope.get("client")
        address: str = peer[0] if peer else "0.0.0.0"  # noqa: S104 - a placeholder, not a bind address
        if not self.trusted:
            return str(address)
        forwarded = _header(scope, b"x-forwarded-for")
        hops = [address]
        if forwarded:
            hops = [h.strip() for h in forwarded.decode("latin-1").split(",") if h.strip()] + [
                address
            ]
        for hop in reversed(hops):
            try:
                ip = ipaddress.ip_address(hop)
            except ValueError:
                return hop[:64]
            if not any(ip in net for net in self.trusted):
                return hop
        return hops[0]

    # ------------------------------------------------------------------- the API

    async def api(self, scope: Scope, receive: Receive, send: Send, trace: str) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        if path in ("/api/openapi.json", "/api/docs"):
            await self.docs(scope, receive, send, trace)
            return
        service = path.split("/", 3)[2]
        rule = self.matcher.match(method, path)
        client_ip = self.client_ip(scope)
        runtime = self.runtime
        forwarder = self.forwarders.get(service)
        if service == "live" and runtime is not None and runtime.live is not None:
            forwarder = LiveForwarder(runtime.live, runtime.verifier)
        state: dict[str, Any] = {"status": 500, "bytes": 0, "audited": False}

        async def refuse(status: int, type_suffix: str, detail: str, **extra: Any) -> None:
            headers = [*_SECURITY_HEADERS, (b"x-trace-id", trace.encode())]
            retry = extra.pop("retry_after", None)
            if retry is not None:
                headers.append((b"retry-after", str(retry).encode()))
                extra["retry_after"] = retry
            if status == 401:
                headers.append((b"www-authenticate", b"Bearer"))
            for cookie in extra.pop("cookies", ()):
                headers.append((b"set-cookie", cookie))
            state["status"] = status
            await send_problem(
                send,
                status,
                type_suffix,
                detail,
                instance=path,
                trace_id=trace,
                headers=headers,
                **extra,
            )

        if runtime is None:
            await refuse(
                503, "starting", "the gateway is starting; try again in a moment", retry_after=5
            )
            return
        if forwarder is None or (rule is not None and not rule.served):
            await refuse(
                404,
                "not-found",
                f"no such endpoint {path}"
                + (f" ({rule.note})" if rule is not None and rule.note else ""),
            )
            self._audit(runtime, scope, rule, None, client_ip, state, started)
            return
        emitter = runtime.audit
        if emitter is not None and emitter.saturated:
            await refuse(
                503,
                "audit-unavailable",
                "审计服务暂不可用 (the audit log cannot be written now)",
                retry_after=10,
            )
            return
        headers = dict(scope["headers"])
        cookies = _cookies(headers.get(b"cookie"))
        principal: Principal | None = None
        try:
            self._check_origin(scope, method, headers, cookies, runtime)
            principal = await runtime.authenticator.authenticate(
                method=method, headers=headers, cookies=cookies, rule=rule, client_ip=client_ip
            )
        except Refusal as refusal:
            extra: dict[str, Any] = {}
            if refusal.retry_after is not None:
                extra["retry_after"] = refusal.retry_after
            if refusal.clear_session:
                extra["cookies"] = _clearing_cookies(runtime)
            await refuse(refusal.status, refusal.type_suffix, refusal.detail, **extra)
            self._audit(
                runtime,
                scope,
                rule,
                Principal(kind="anonymous", identity=refusal.identity),
                client_ip,
                state,
                started,
            )
            return
        forward_headers = self._forward_headers(scope, principal, client_ip, trace, service)
        secure = runtime.settings.auth_cookie_secure

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                kept = []
                for name, value in message.get("headers", []):
                    if name.lower() == _AUDITED:
                        state["audited"] = True
                        continue
                    kept.append((name, value))
                kept.extend(_SECURITY_HEADERS)
                if secure:
                    kept.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": kept}
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await forwarder(
                scope, receive, capture, prefix=f"/api/{service}", headers=forward_headers
            )
        finally:
            if not state["audited"]:
                self._audit(runtime, scope, rule, principal, client_ip, state, started)

    def _check_origin(
        self,
        scope: Scope,
        method: str,
        headers: dict[bytes, bytes],
        cookies: dict[str, str],
        runtime: AuthRuntime,
    ) -> None:
        """Unsafe requests from a browser must come from this site (login CSRF, and a second
        line behind the CSRF token)."""
        if method not in UNSAFE:
            return
        origin = headers.get(b"origin")
        if origin is None or (origin == b"null" and not cookies):
            return
        host = headers.get(b"host", b"").decode("latin-1")
        origin_host = origin.decode("latin-1").split("://", 1)[-1]
        if origin_host != host:
            raise Refusal(
                403,
                "cross-site",
                "跨站请求被拒绝 (a request from another site was refused)",
            )

    def _forward_headers(
        self, scope: Scope, principal: Principal, client_ip: str, trace: str, service: str
    ) -> Headers:
        keep_cookies = service == "auth"
        headers: Headers = [
            (name, value)
            for name, value in scope["headers"]
            if name not in _DROP and (keep_cookies or name != b"cookie")
        ]
        if principal.token is not None:
            headers.append((b"authorization", b"Bearer " + principal.token.encode()))
        headers.append((b"x-forwarded-for", client_ip.encode()))
        headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
        headers.append((b"x-trace-id", trace.encode()))
        return headers

    def _audit(
        self,
        runtime: AuthRuntime,
        scope: Scope,
        rule: Rule | None,
        principal: Principal | None,
        client_ip: str,
        state: dict[str, Any],
        started: float,
    ) -> None:
        emitter = runtime.audit
        identity = principal.identity if principal is not None else None
        method: str = scope["method"]
        path: str = scope["path"]
        query: bytes = scope.get("query_string", b"")
        status = int(state["status"])
        template = rule.path if rule is not None else path
        details: dict[str, Any] = {
            "method": method,
            "path": path,
            "route": template,
            "status": status,
            "bytes": state["bytes"],
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "via": principal.kind if principal is not None else "none",
        }
        if query:
            details["query"] = _query_for_audit(query)
        if identity is not None and identity.name:
            details["name"] = identity.name
        if path.endswith(".xlsx") or b"format=xlsx" in query:
            details["export"] = True
        emitter.record(
            AuditEvent(
                actor=identity.subject if identity is not None else "anonymous",
                actor_kind=identity.kind if identity is not None else "anonymous",
                action=f"{method} {template}",
                resource=path,
                outcome=_outcome(status),  # type: ignore[arg-type]
                at=datetime.now(UTC),
                source_ip=client_ip,
                details=details,
            )
        )

    # ------------------------------------------------------------------ the docs

    async def openapi(self) -> dict[str, Any]:
        """The merged document (rebuilt at most once a minute)."""
        now = time.monotonic()
        if self._openapi is not None and now - self._openapi[0] < 60:
            return self._openapi[1]
        documents = {}
        for name, source in self.openapi_sources.items():
            try:
                document = await source()
            except Exception as exc:
                _logger.warning("OpenAPI of %s unavailable: %s", name, exc)
                document = None
            if document is not None:
                documents[name] = document
        merged = merge_openapi(documents, matcher=self.matcher)
        self._openapi = (now, merged)
        return merged

    async def docs(self, scope: Scope, receive: Receive, send: Send, trace: str) -> None:
        if not self.public_docs:
            runtime = self.runtime
            headers = dict(scope["headers"])
            try:
                if runtime is None:
                    raise Refusal(503, "starting", "the gateway is starting")
                await runtime.authenticator.authenticate(
                    method="GET",
                    headers=headers,
                    cookies=_cookies(headers.get(b"cookie")),
                    rule=None,
                    client_ip=self.client_ip(scope),
                )
            except Refusal as refusal:
                await send_problem(
                    send, refusal.status, refusal.type_suffix, refusal.detail, trace_id=trace
                )
                return
        if scope["path"] == "/api/openapi.json":
            body = json.dumps(await self.openapi(), ensure_ascii=False).encode()
            await _respond(send, 200, body, b"application/json")
            return
        page = get_swagger_ui_html(openapi_url="/api/openapi.json", title="EcoWatt API")
        await _respond(send, 200, bytes(page.body), b"text/html; charset=utf-8")

    # -------------------------------------------------------------- the website

    async def site(self, scope: Scope, receive: Receive, send: Send, trace: str) -> None:
        path: str = scope["path"]
        if path == "/healthz":
            body = json.dumps({"status": "ok", "service": "gateway"}).encode()
            await _respond(send, 200, body, b"application/json")
            return
        if path == "/.well-known/jwks.json":
            runtime = self.runtime
            if runtime is None:
                await send_problem(send, 503, "starting", "the gateway is starting", trace_id=trace)
                return
            body = json.dumps(runtime.published_keys.to_jwks()).encode()
            await _respond(
                send,
                200,
                body,
                b"application/json",
                extra=[(b"cache-control", b"public, max-age=60")],
            )
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send_problem(send, 405, "method-not-allowed", "only GET here", trace_id=trace)
            return
        if self.web_dir is not None:
            await self._spa(scope, send, path)
            return
        if path in ("/", "/login", "/index.html"):
            await _respond(
                send,
                200,
                (_STATIC / "login.html").read_bytes(),
                b"text/html; charset=utf-8",
                extra=[(b"content-security-policy", _LOGIN_CSP), (b"cache-control", b"no-store")],
            )
            return
        if path in ("/login.js", "/login.css"):
            kind = (
                b"text/javascript; charset=utf-8"
                if path.endswith(".js")
                else b"text/css; charset=utf-8"
            )
            await _respond(send, 200, (_STATIC / path.lstrip("/")).read_bytes(), kind)
            return
        await send_problem(send, 404, "not-found", f"no page {path}", trace_id=trace)

    async def _spa(self, scope: Scope, send: Send, path: str) -> None:
        """A file of the SPA build, else its index.html (client-side routes); the build's
        precompressed `<file>.gz` to browsers that accept gzip."""
        assert self.web_dir is not None
        root = self.web_dir.resolve()
        candidate = (root / path.lstrip("/")).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            kind = (mimetypes.guess_type(candidate.name)[0] or "application/octet-stream").encode()
            cache = b"public, max-age=31536000, immutable" if "/assets/" in path else b"no-cache"
        else:
            candidate, kind, cache = root / "index.html", b"text/html; charset=utf-8", b"no-cache"
        extra: Headers = [(b"cache-control", cache), (b"vary", b"accept-encoding")]
        compressed = candidate.with_name(candidate.name + ".gz")
        accepted = _header(scope, b"accept-encoding") or b""
        if b"gzip" in accepted and compressed.is_file():
            extra.append((b"content-encoding", b"gzip"))
            candidate = compressed
        await _respond(send, 200, candidate.read_bytes(), kind, extra=extra)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def _cookies(raw: bytes | None) -> dict[str, str]:
    if not raw:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw.decode("latin-1"))
    except Exception:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _clearing_cookies(runtime: AuthRuntime) -> list[bytes]:
    settings = runtime.settings
    secure = "; Secure" if settings.auth_cookie_secure else ""
    return [
        f"{name}=; Max-Age=0; Path=/; SameSite=Lax{secure}".encode()
        for name in (settings.session_cookie, settings.csrf_cookie)
    ]


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes, *, extra: Headers | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *_SECURITY_HEADERS,
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _trivial_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
