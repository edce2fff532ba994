"""Distributed mode: `python -m ecowatt_auth` (the gateway) in front of the registry, each
its own process, production settings, on the real broker, PostgreSQL and Redis.

The gateway proxies with the caller's credentials replaced by a signed identity, which the
registry verifies with keys fetched from the auth service's JWKS; the trace id goes
through; bodies stream both ways; audit events travel over Kafka into the auth service's
log; a service that is down is a 502 problem, one that hangs a 504. Then the signing key is
rotated — only the gateway restarts — and the registry, still running, trusts tokens of the
new key while those of the retired one keep working.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ecowatt_kernel.db import scratch_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_PASSWORD = "Distributed!Gw-2026"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pem_private(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pem_public(*keys: Ed25519PrivateKey) -> str:
    return "".join(
        k.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
        for k in keys
    )


class Process:
    def __init__(self, name: str, module: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self.handle = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**os.environ, **env},
            stdout=self.handle,
            stderr=subprocess.STDOUT,
        )

    def wait_http(self, url: str, limit_s: float = 90.0) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.output()[-4000:]}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{self.name} not ready at {url}:\n{self.output()[-4000:]}")

    def output(self) -> str:
        self.handle.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.handle.close()


@pytest.fixture
def hanging_upstream() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        for conn in held:
            conn.close()
        server.close()


def test_the_gateway_proxies_to_services_in_their_own_processes(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    kafka_bootstrap: str,
    hanging_upstream: int,
) -> None:
    asyncio.run(_scenario(tmp_path, database_url, redis_url, kafka_bootstrap, hanging_upstream))


async def _scenario(
    tmp_path: Path, database_url: str, redis_url: str, kafka: str, hanging: int
) -> None:
    first_key, second_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ports = {name: free_port() for name in ("gateway", "auth", "registry", "down")}
    async with scratch_database(database_url) as url:
        common = {
            "ECOWATT_ENVIRONMENT": "production",
            "ECOWATT_BUS_BACKEND": "kafka",
            "ECOWATT_KAFKA_BOOTSTRAP_SERVERS": kafka,
            "ECOWATT_DATABASE_URL": url,
            "ECOWATT_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/9",
            "ECOWATT_LOG_FORMAT": "text",
        }
        registry_env = {
            **common,
            "ECOWATT_HTTP_PORT": str(ports["registry"]),
            "ECOWATT_IDENTITY_JWKS_URL": f"http://127.0.0.1:{ports['auth']}/jwks.json",
            "ECOWATT_IDENTITY_JWKS_REFRESH_S": "3600",  # a rotation is found by its unknown kid
        }

        def gateway_env(
            signing: Ed25519PrivateKey, *published: Ed25519PrivateKey
        ) -> dict[str, str]:
            return {
                **common,
                "ECOWATT_HTTP_PORT": str(ports["auth"]),
                "ECOWATT_GATEWAY_PORT": str(ports["gateway"]),
                "ECOWATT_GATEWAY_UPSTREAMS": json.dumps(
                    {
                        "registry": f"http://127.0.0.1:{ports['registry']}",
                        "alarm": f"http://127.0.0.1:{ports['down']}",
                        "reporting": f"http://127.0.0.1:{hanging}",
                    }
                ),
                "ECOWATT_GATEWAY_READ_TIMEOUT_S": "2",
                "ECOWATT_IDENTITY_PRIVATE_KEY": pem_private(signing),
                "ECOWATT_IDENTITY_PUBLIC_KEY": pem_public(*published),
                "ECOWATT_AUTH_DATA_KEY": "a-test-data-key-" + "x" * 32,
                "ECOWATT_ADMIN_PASSWORD": ADMIN_PASSWORD,
            }

        gateway = Process(
            "gateway", "ecowatt_auth", gateway_env(first_key, first_key), tmp_path / "gw1.log"
        )
        registry = Process("registry", "ecowatt_registry", registry_env, tmp_path / "registry.log")
        processes = [gateway, registry]
        try:
            gateway.wait_http(f"http://127.0.0.1:{ports['auth']}/readyz")
            registry.wait_http(f"http://127.0.0.1:{ports['registry']}/readyz")
            base = f"http://127.0.0.1:{ports['gateway']}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                token = await _token(client)
                bearer = {"Authorization": f"Bearer {token}"}
                await _proxying(client, bearer, ports)
                await _audit_over_kafka(client, bearer)
                await _failures(client, bearer)

            # rotation: the gateway restarts with a new signing key and still publishes the
            # old one; the registry is not restarted
            gateway.stop()
            gateway = Process(
                "gateway",
                "ecowatt_auth",
                gateway_env(second_key, first_key),
                tmp_path / "gw2.log",
            )
            processes.append(gateway)
            gateway.wait_http(f"http://127.0.0.1:{ports['auth']}/readyz")
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                new = {"Authorization": f"Bearer {await _token(client)}"}
                assert (
                    await client.get("/api/registry/enterprises", headers=new)
                ).status_code == 200
                # a token of the retired key, issued before the rotation, still works
                assert (
                    await client.get("/api/registry/enterprises", headers=bearer)
                ).status_code == 200
            assert (
                "JWKS" not in registry.output() or "could not be fetched" not in registry.output()
            )
        finally:
            for process in processes:
                process.stop()


async def _token(client: httpx.AsyncClient) -> str:
    response = await client.post(
        "/api/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def _proxying(
    client: httpx.AsyncClient, bearer: dict[str, str], ports: dict[str, int]
) -> None:
    trace = uuid.uuid4().hex
    created = await client.post(
        "/api/registry/enterprises",
        json={"name": "分布式网关测试", "district_code": "610112", "performance_grade": "B"},
        headers={**bearer, "X-Trace-Id": trace},
    )
    assert created.status_code == 201, created.text
    assert created.headers["x-trace-id"] == trace
    me = (await client.get("/api/auth/me", headers=bearer)).json()
    assert created.json()["created_by"] == me["id"]  # the registry saw the signed identity
    # the registry never trusts an unsigned header, and its own port needs a token too
    async with httpx.AsyncClient() as raw:
        direct = await raw.get(
            f"http://127.0.0.1:{ports['registry']}/enterprises",
            headers={"X-Forwarded-For": "1.2.3.4"},
        )
    assert direct.status_code == 401
    # operations endpoints stay on the service port
    assert (await client.get("/api/registry/readyz", headers=bearer)).status_code == 404
    # a streamed upload (an import workbook of ~3 MB) and a streamed download
    junk = os.urandom(3 * 1024 * 1024)
    upload = await client.post(
        "/api/registry/import",
        files={"file": ("archive.xlsx", junk, "application/octet-stream")},
        headers=bearer,
    )
    assert upload.status_code == 422 and "Excel" in upload.json()["detail"]
    async with client.stream("GET", "/api/registry/enterprises.xlsx", headers=bearer) as download:
        assert download.status_code == 200
        body = b"".join([chunk async for chunk in download.aiter_raw()])
    assert body[:2] == b"PK"
    merged = (await client.get("/api/openapi.json")).json()
    assert "/api/registry/enterprises" in merged["paths"]
    assert "/api/auth/session" in merged["paths"]


async def _audit_over_kafka(client: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    trace = uuid.uuid4().hex
    await client.get("/api/registry/enterprises", headers={**bearer, "X-Trace-Id": trace})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = await client.get(
            "/api/auth/audit", params={"action": "GET /api/registry/enterprises"}, headers=bearer
        )
        assert found.status_code == 200
        if any(item["trace_id"] == trace for item in found.json()["items"]):
            return
        await asyncio.sleep(0.5)
    raise AssertionError("the gateway's audit event did not reach the auth service's log")


async def _failures(client: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    down = await client.get("/api/alarm/alarms", headers=bearer)
    assert down.status_code == 502
    assert down.headers["content-type"] == "application/problem+json"
    assert down.json()["type"].endswith("/upstream-unavailable")
    started = time.monotonic()
    hung = await client.get("/api/reporting/anything", headers=bearer)
    assert hung.status_code == 504 and hung.json()["type"].endswith("/upstream-timeout")
    assert time.monotonic() - started < 10
    nobody: dict[str, Any] = {}
    assert (await client.get("/api/registry/enterprises", headers=nobody)).status_code == 401
