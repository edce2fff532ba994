"""Where the gateway sends a request: a service app in this process, or one over HTTP.

    LocalForwarder   calls the service's ASGI app directly (standalone mode, and the auth
                     service inside the distributed gateway), as Starlette's Mount would
    ProxyForwarder   streams the request to the service's port with httpx and streams the
                     answer back; an unreachable service is a 502 problem, a slow one 504

Both receive the headers the gateway decided on (the caller's credentials replaced by a
signed identity token, `X-Forwarded-For`, `X-Trace-Id`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["Forwarder", "LocalForwarder", "ProxyForwarder", "send_problem"]

_logger = logging.getLogger(__name__)
Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
    }
)


async def send_problem(
    send: Send,
    status: int,
    type_suffix: str,
    detail: str,
    *,
    instance: str | None = None,
    trace_id: str | None = None,
    headers: Headers | None = None,
    **extensions: Any,
) -> None:
    """Answer with an RFC 9457 problem (the gateway's own refusals and upstream failures)."""
    from http import HTTPStatus

    body: dict[str, Any] = {
        "type": f"https://ecowatt.dev/problems/{type_suffix}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if trace_id:
        body["trace_id"] = trace_id
    body.update(extensions)
    payload = json.dumps(body, ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class Forwarder(Protocol):
    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, *, prefix: str, headers: Headers
    ) -> None: ...


class LocalForwarder:
    """An app in this process, mounted at `prefix` (`/api/<service>`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, *, prefix: str, headers: Headers
    ) -> None:
        root = scope.get("root_path", "")
        child = {
            **scope,
            "headers": headers,
            "app_root_path": scope.get("app_root_path", root),
            "root_path": root + prefix,
        }
        await self.app(child, receive, send)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False


class ProxyForwarder:
    """A service at `base_url` (its own port), through a shared httpx client."""

    def __init__(self, base_url: str, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, *, prefix: str, headers: Headers
    ) -> None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        rest = raw_path[len(prefix.encode()) :] or b"/"
        query: bytes = scope.get("query_string", b"")
        url = (
            self.base_url
            + rest.decode("latin-1")
            + ("?" + query.decode("latin-1") if query else "")
        )
        content: AsyncIterator[bytes] | None = None
        if _has_body(scope):

            async def body() -> AsyncIterator[bytes]:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    if chunk:
                        yield chunk
                    if not message.get("more_body", False):
                        return

            content = body()
        upstream_headers = [(k, v) for k, v in headers if k not in HOP_BY_HOP]
        request = self.client.build_request(
            scope["method"], url, headers=upstream_headers, content=content
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            _logger.warning("upstream %s timed out: %s", self.base_url, exc)
            await send_problem(
                send,
                504,
                "upstream-timeout",
                f"服务无响应 (the service did not answer in time: {type(exc).__name__})",
                instance=scope["path"],
            )
            return
        except httpx.HTTPError as exc:
            _logger.warning("upstream %s unreachable: %s", self.base_url, exc)
            await send_problem(
                send,
                502,
                "upstream-unavailable",
                f"服务暂不可用 (the service is unreachable: {type(exc).__name__})",
                instance=scope["path"],
            )
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP
                    ],
                }
            )
            try:
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.HTTPError as exc:
                # The status line is out: all we can do is end the body early.
                _logger.warning("upstream %s broke off its answer: %s", self.base_url, exc)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()
