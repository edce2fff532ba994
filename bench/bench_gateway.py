"""`make bench-gateway`: what the gateway costs.

Starts the registry (`python -m ecowatt_registry`) and the gateway (`python -m ecowatt_auth`)
as separate processes on the test infrastructure (Kafka, PostgreSQL, Redis from
`make infra-up`), logs in, and measures with a keep-alive HTTP/1.1 load generator of its own
(raw asyncio streams, so that the client is not the bottleneck it would be with httpx):

1. latency of one client at a time: an authenticated small GET (`/reference/zones`) on the
   registry's own port vs through the gateway — the added p50/p99;
2. throughput: requests/s with `--concurrency` clients, directly and through the gateway;
3. gateway overhead alone: the same through the gateway to its in-process auth service
   (`GET /api/auth/roles`), where no second hop is involved;
4. login cost: `POST /api/auth/token` one at a time (scrypt, 16 MiB) and its rate.

Every request through the gateway is authenticated (bearer token: signature, revocation
check and rate-limit counter in one Redis round trip), forwarded with a signed identity and
audited on Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infra_env import infra

ADMIN_PASSWORD = "Bench!Gateway-2026"  # noqa: S105 - a throwaway benchmark account


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _one_connection(
    host: str, port: int, request: bytes, until: float, latencies: list[float], limit: int | None
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.perf_counter() < until and (limit is None or done < limit):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"HTTP {status} from {host}:{port}: {head[:200]!r}")
            done += 1
    finally:
        writer.close()
    return done


async def load(
    host: str, port: int, path: str, token: str, *, concurrency: int, seconds: float
) -> dict[str, float]:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    started = time.perf_counter()
    until = started + seconds
    counts = await asyncio.gather(
        *(_one_connection(host, port, request, until, latencies, None) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": float(sum(counts)),
        "rps": sum(counts) / elapsed,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
    }


class Service:
    def __init__(self, module: str, env: dict[str, str], log: Path) -> None:
        self.log = log.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own modules
            [sys.executable, "-m", module],
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, url: str, limit_s: float = 120) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.process.args} exited; see {self.log.name}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"{url} not ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


async def measure(
    args: argparse.Namespace, gateway_port: int, registry_port: int
) -> dict[str, object]:
    host = "127.0.0.1"
    async with httpx.AsyncClient(base_url=f"http://{host}:{gateway_port}", timeout=60) as client:
        logins: list[float] = []
        for _ in range(args.logins):
            started = time.perf_counter()
            response = await client.post(
                "/api/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            logins.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        started = time.perf_counter()
        parallel = await asyncio.gather(
            *(
                client.post(
                    "/api/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
                )
                for _ in range(args.logins)
            )
        )
        login_rate = len(parallel) / (time.perf_counter() - started)
        assert all(r.status_code == 200 for r in parallel)

    direct_path, gateway_path = "/reference/zones", "/api/registry/reference/zones"
    for port, path in ((registry_port, direct_path), (gateway_port, gateway_path)):
        await load(host, port, path, token, concurrency=4, seconds=2)  # warm up
    results: dict[str, object] = {}
    results["latency_direct"] = await load(
        host, registry_port, direct_path, token, concurrency=1, seconds=args.seconds
    )
    results["latency_gateway"] = await load(
        host, gateway_port, gateway_path, token, concurrency=1, seconds=args.seconds
    )
    results["throughput_direct"] = await load(
        host, registry_port, direct_path, token, concurrency=args.concurrency, seconds=args.seconds
    )
    results["throughput_gateway"] = await load(
        host, gateway_port, gateway_path, token, concurrency=args.concurrency, seconds=args.seconds
    )
    results["throughput_gateway_local"] = await load(
        host,
        gateway_port,
        "/api/auth/roles",
        token,
        concurrency=args.concurrency,
        seconds=args.seconds,
    )
    results["login_ms_mean"] = statistics.mean(logins) * 1000
    results["login_ms_p50"] = statistics.median(logins) * 1000
    results["logins_per_s_parallel"] = login_rate
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--logins", type=int, default=20)
    args = parser.parse_args()

    ports = {n: free_port() for n in ("gateway", "auth", "registry")}
    database = infra("DATABASE_URL")
    redis = infra("REDIS_URL").rsplit("/", 1)[0] + "/11"
    kafka = infra("KAFKA_BOOTSTRAP_SERVERS")
    work = Path(".bench/gateway")
    work.mkdir(parents=True, exist_ok=True)

    import asyncio as _asyncio

    from ecowatt_kernel.db import scratch_database

    async def run() -> dict[str, object]:
        async with scratch_database(database, prefix="ecowatt_bench") as url:
            common = {
                "ECOWATT_ENVIRONMENT": "test",
                "ECOWATT_BUS_BACKEND": "kafka",
                "ECOWATT_KAFKA_BOOTSTRAP_SERVERS": kafka,
                "ECOWATT_DATABASE_URL": url,
                "ECOWATT_REDIS_URL": redis,
                "ECOWATT_LOG_LEVEL": "WARNING",
            }
            registry = Service(
                "ecowatt_registry",
                {**common, "ECOWATT_HTTP_PORT": str(ports["registry"])},
                work / "registry.log",
            )
            gateway = Service(
                "ecowatt_auth",
                {
                    **common,
                    "ECOWATT_HTTP_PORT": str(ports["auth"]),
                    "ECOWATT_GATEWAY_PORT": str(ports["gateway"]),
                    "ECOWATT_GATEWAY_UPSTREAMS": json.dumps(
                        {"registry": f"http://127.0.0.1:{ports['registry']}"}
                    ),
                    "ECOWATT_ADMIN_PASSWORD": ADMIN_PASSWORD,
                    "ECOWATT_AUTH_RATE_USER_PER_MINUTE": "100000000",
                    "ECOWATT_AUTH_RATE_ANONYMOUS_PER_MINUTE": "100000",
                },
                work / "gateway.log",
            )
            try:
                registry.wait(f"http://127.0.0.1:{ports['registry']}/readyz")
                gateway.wait(f"http://127.0.0.1:{ports['auth']}/readyz")
                return await measure(args, ports["gateway"], ports["registry"])
            finally:
                gateway.stop()
                registry.stop()

    results = _asyncio.run(run())
    direct, through = results["latency_direct"], results["latency_gateway"]
    assert isinstance(direct, dict) and isinstance(through, dict)
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    )
    for name, value in results.items():
        if isinstance(value, dict):
            print(
                f"{name:26} {value['rps']:8.0f} req/s   p50 {value['p50_ms']:6.2f} ms   "
                f"p99 {value['p99_ms']:6.2f} ms   ({value['requests']:.0f} requests)"
            )
        else:
            print(f"{name:26} {value:8.1f}")
    print(
        f"added by the gateway (one client): p50 {through['p50_ms'] - direct['p50_ms']:.2f} ms, "
        f"p99 {through['p99_ms'] - direct['p99_ms']:.2f} ms"
    )


if __name__ == "__main__":
    main()
