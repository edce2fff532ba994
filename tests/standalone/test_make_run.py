"""`make run` as a user sees it: the standalone process answers /healthz on its port within
60 s and opens on a login page where the first administrator logs in, shows the synthetic
city's simulated devices online through the ingest API within the same 60 s, stops cleanly
(within systemd's default 90 s) on Ctrl-C and on SIGTERM (what systemd and orchestrators
send; embedded servers and simulated devices included), and keeps its data for the next
run. Runs the real entry point in a subprocess with its own data folder and ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START_LIMIT_S = 60.0
ADMIN_PASSWORD = "Make-Run!Gw-2026"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(data: Path, ports: dict[str, int]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ECOWATT_ENVIRONMENT": "development",  # as `make run` sets it
        "ECOWATT_DATA_DIR": str(data),
        "ECOWATT_HTTP_PORT": str(ports["http"]),
        "ECOWATT_STANDALONE_PG_PORT": str(ports["pg"]),
        "ECOWATT_STANDALONE_REDIS_PORT": str(ports["redis"]),
        "ECOWATT_HJ212_PORT": str(ports["hj212"]),
        "ECOWATT_OPERATIONS_PORT": str(ports["ops"]),
        "ECOWATT_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ecowatt_standalone"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_healthy(process: subprocess.Popen[bytes], port: int) -> float:
    started = time.monotonic()
    while time.monotonic() - started < START_LIMIT_S:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"standalone exited early:\n{output[-3000:]}")
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            if response.status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"/healthz did not answer within {START_LIMIT_S:.0f} s")


def token() -> str:
    """A development token, as `make token` prints it."""
    done = subprocess.run(
        [sys.executable, "-m", "ecowatt_standalone.token"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def wait_devices_online(
    process: subprocess.Popen[bytes], port: int, bearer: str, started: float
) -> dict[str, object]:
    """The ingest API's online devices, once the simulator's devices are there."""
    url = f"http://127.0.0.1:{port}/api/ingest-hj212/devices"
    headers = {"Authorization": f"Bearer {bearer}"}
    while time.monotonic() - started < START_LIMIT_S:
        assert process.poll() is None, "standalone exited"
        response = httpx.get(url, params={"online": "true", "page_size": 500}, headers=headers)
        assert response.status_code == 200, response.text
        page: dict[str, object] = response.json()
        if page["total"]:
            return page
        time.sleep(0.5)
    raise AssertionError(f"no simulated device online within {START_LIMIT_S:.0f} s")


STOP_S = 90
"""How long a stop may take: systemd's default `TimeoutStopSec`, after which it kills."""


def stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGINT) -> str:
    process.send_signal(sig)
    try:
        output, _ = process.communicate(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        process.kill()  # never leave a platform (and its simulated devices) running
        output, _ = process.communicate(timeout=30)
        raise AssertionError(
            f"no clean stop within {STOP_S} s:\n{output.decode()[-3000:]}"
        ) from None
    assert process.returncode == 0, output.decode()[-3000:]
    return output.decode()


def test_run_serves_health_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ports = {
        "http": free_port(),
        "ops": free_port(),
        "pg": free_port(),
        "redis": free_port(),
        "hj212": free_port(),
    }
    bearer = token()

    started = time.monotonic()
    first = start(data, ports)
    try:
        wait_healthy(first, ports["http"])
        ready = httpx.get(f"http://127.0.0.1:{ports['ops']}/registry/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        home = httpx.get(f"http://127.0.0.1:{ports['http']}/", timeout=5)
        assert home.status_code == 200 and "登录" in home.text
        login = httpx.post(
            f"http://127.0.0.1:{ports['http']}/api/auth/session",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            timeout=10,
        )
        assert login.status_code == 200, login.text
        assert login.json()["user"]["role"] == "admin"
        online = wait_devices_online(first, ports["http"], bearer, started)
        items = online["items"]
        assert isinstance(items, list) and items
        assert all(d["registered"] and d["enterprise_id"].startswith("syn20241-") for d in items)
    finally:
        log = stop(first)
    assert "stopping embedded PostgreSQL and Redis" in log
    assert ADMIN_PASSWORD not in log
    assert "simulating" in log and "devices of the synthetic city (seed 20241)" in log
    for port in (ports["pg"], ports["redis"], ports["http"], ports["ops"], ports["hj212"]):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    pg_version = (data / "postgres" / "data" / "PG_VERSION").read_text()
    marker = data / "postgres" / "data" / "base"
    databases_before = sorted(p.name for p in marker.iterdir())

    second = start(data, ports)
    try:
        wait_healthy(second, ports["http"])
    finally:
        log = stop(second, signal.SIGTERM)
    assert "stopping embedded PostgreSQL and Redis" in log
    for port in (ports["pg"], ports["redis"], ports["http"], ports["hj212"]):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} open after SIGTERM"
    assert not (data / "postgres" / "data" / "postmaster.pid").exists(), "PostgreSQL still runs"
    assert not (data / "redis" / "redis.pid").exists(), "Redis still runs"
    assert (data / "postgres" / "data" / "PG_VERSION").read_text() == pg_version
    assert sorted(p.name for p in marker.iterdir()) == databases_before
    assert "Running upgrade" not in log, "the second run found its migrations applied"
