"""Run the auth service and the gateway (distributed mode): `python -m ecowatt_auth`.

The gateway listens on `ECOWATT_GATEWAY_PORT` (8000, public) and proxies `/api/<service>/…`
to `ECOWATT_GATEWAY_UPSTREAMS`; the auth service's own port `ECOWATT_HTTP_PORT` (8001)
answers `/healthz`, `/readyz` and `/metrics` for the orchestrator and Prometheus.
"""

from __future__ import annotations

import asyncio

import uvicorn
from ecowatt_kernel.logging import configure_logging

from ecowatt_auth.gateway.distributed import build_distributed_gateway
from ecowatt_auth.gateway.serving import QuietServer, serve_together
from ecowatt_auth.settings import AuthSettings


def main() -> None:
    settings = AuthSettings()
    configure_logging(service="auth", level=settings.log_level, fmt=settings.log_format)
    gateway, auth_app = build_distributed_gateway(settings)
    public = uvicorn.Server(
        uvicorn.Config(
            gateway,
            host=settings.gateway_host,
            port=settings.gateway_port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    )
    service = QuietServer(
        uvicorn.Config(
            auth_app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )
    asyncio.run(serve_together(public, service))


if __name__ == "__main__":
    main()
