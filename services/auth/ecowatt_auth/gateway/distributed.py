"""The gateway of distributed mode: the auth service in this process, every other service
reverse-proxied to its own port (`ECOWATT_GATEWAY_UPSTREAMS`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from ecowatt_kernel.app import create_app
from fastapi import FastAPI

from ecowatt_auth.gateway.app import Gateway
from ecowatt_auth.gateway.forward import Forwarder, LocalForwarder, ProxyForwarder
from ecowatt_auth.runtime import RUNTIME, AuthRuntime
from ecowatt_auth.settings import AuthSettings

__all__ = ["build_distributed_gateway"]


def _runtime_of(app: FastAPI) -> AuthRuntime | None:
    context = getattr(app.state, "context", None)
    return None if context is None else RUNTIME.find(context)


def build_distributed_gateway(
    settings: AuthSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> tuple[Gateway, FastAPI]:
    """(the public gateway app, the auth service app for its own port). The gateway's
    lifespan runs the auth service's; serve the auth app with `lifespan="off"`."""
    from ecowatt_auth.service import SERVICE

    auth_app = create_app(SERVICE, settings=settings)
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(
            settings.gateway_read_timeout_s, connect=settings.gateway_connect_timeout_s
        ),
        limits=httpx.Limits(
            max_connections=settings.gateway_max_connections,
            max_keepalive_connections=settings.gateway_max_connections,
        ),
        transport=transport,
        follow_redirects=False,
    )
    forwarders: dict[str, Forwarder] = {SERVICE.name: LocalForwarder(auth_app)}
    sources: dict[str, Any] = {}

    async def auth_openapi() -> dict[str, Any]:
        return auth_app.openapi()

    sources[SERVICE.name] = auth_openapi
    for name, url in settings.gateway_upstreams.items():
        if name == SERVICE.name:
            continue
        forwarders[name] = ProxyForwarder(url, client)

        def fetch(base: str = url.rstrip("/")) -> Any:
            async def source() -> dict[str, Any] | None:
                response = await client.get(f"{base}/openapi.json", timeout=5.0)
                response.raise_for_status()
                document: dict[str, Any] = response.json()
                return document

            return source

        sources[name] = fetch()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            async with auth_app.router.lifespan_context(auth_app):
                yield
        finally:
            await client.aclose()

    composition = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None)
    web = Path(settings.gateway_web_dir) if settings.gateway_web_dir else Path("web/dist")
    gateway = Gateway(
        forwarders=forwarders,
        runtime=lambda: _runtime_of(auth_app),
        lifespan_app=composition,
        openapi_sources=sources,
        web_dir=web,
        trusted_proxies=settings.gateway_trusted_proxies,
        public_docs=settings.gateway_public_docs,
    )
    return gateway, auth_app
