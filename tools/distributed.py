"""Distributed mode on one machine: every service in its own process (`make run-distributed`).

    python tools/distributed.py run [--no-simulator] [--environment development]
    python tools/distributed.py simulate --target HOST:PORT --city-seed N   (one of its processes)

Each service runs as `python -m ecowatt_<service>` on its own port against the real Kafka,
PostgreSQL and Redis of `make infra-up` (read from `.infra/env`, or KAFKA_BOOTSTRAP_SERVERS,
DATABASE_URL and REDIS_URL), in a database of its own (`ecowatt_distributed`, created when
missing) and Redis database 1, so the test suite's data and this run's never meet.

Ports: the gateway on ECOWATT_HTTP_PORT (8000), service *n* on ECOWATT_HTTP_PORT + n —
auth 8001, registry 8002, ingest-hj212 8003 (HJ 212 on ECOWATT_HJ212_PORT, 9212),
validation 8004, alarm 8005, control-plan 8006, reporting 8007, ops 8008.

The supervisor starts the processes in order, each once the previous answers `/readyz`;
prefixes every line they print with their name; restarts one that dies (after
`restart_delay_s`, doubling up to 30 s), as a Kubernetes Deployment would; and on Ctrl-C or
SIGTERM stops them all in reverse order (SIGTERM, then SIGKILL after 30 s). The children run
in their own session, so Ctrl-C reaches only the supervisor and the order holds.

The auth process is also the public gateway: `python -m ecowatt_auth` serves the gateway on
ECOWATT_GATEWAY_PORT (the gateway port, 8000), proxying `/api/<service>/…` to the upstreams in
ECOWATT_GATEWAY_UPSTREAMS (a JSON object, name → URL), and its own operations endpoints on
ECOWATT_HTTP_PORT (8001).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
MAX_RESTART_DELAY_S = 30.0

# (name, module, port offset from the gateway port), in start order: the archive first (the
# others read it), the device edge last (it feeds the rest), ops once there is something to see.
SERVICES: tuple[tuple[str, str, int], ...] = (
    ("auth", "ecowatt_auth", 1),
    ("registry", "ecowatt_registry", 2),
    ("validation", "ecowatt_validation", 4),
    ("alarm", "ecowatt_alarm", 5),
    ("control-plan", "ecowatt_control_plan", 6),
    ("reporting", "ecowatt_reporting", 7),
    ("ops", "ecowatt_ops", 8),
    ("ingest-hj212", "ecowatt_ingest", 3),
)

# Where each service takes its topic names (tests give every run private topics).
TOPIC_VARIABLES: dict[str, dict[str, str]] = {
    "auth": {
        "audit.events": "ECOWATT_AUTH_MONITOR_AUDIT_TOPIC",
        "hj212.frames": "ECOWATT_AUTH_MONITOR_FRAMES_TOPIC",
    },
    "ingest-hj212": {
        "hj212.frames": "ECOWATT_TOPIC_FRAMES",
        "telemetry.readings": "ECOWATT_TOPIC_READINGS",
        "device.commands": "ECOWATT_TOPIC_COMMANDS",
        "device.command-results": "ECOWATT_TOPIC_COMMAND_RESULTS",
        "audit.events": "ECOWATT_TOPIC_AUDIT",
        "registry.changes": "ECOWATT_TOPIC_REGISTRY",
    },
    "validation": {
        "telemetry.readings": "ECOWATT_READINGS_TOPIC",
        "telemetry.points": "ECOWATT_POINTS_TOPIC",
        "registry.changes": "ECOWATT_REGISTRY_TOPIC",
        "quality.findings": "ECOWATT_FINDINGS_TOPIC",
    },
    "alarm": {
        "telemetry.points": "ECOWATT_ALARM_POINTS_TOPIC",
        "registry.changes": "ECOWATT_ALARM_REGISTRY_TOPIC",
        "control.tasks": "ECOWATT_ALARM_TASKS_TOPIC",
        "quality.findings": "ECOWATT_ALARM_FINDINGS_TOPIC",
        "facility.states": "ECOWATT_ALARM_STATES_TOPIC",
        "alarms": "ECOWATT_ALARM_ALARMS_TOPIC",
    },
}


def log(message: str) -> None:
    print(f"[distributed] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- configuration


@dataclass
class Infra:
    """Connection settings of the servers the services use."""

    kafka: str
    database_url: str
    redis_url: str

    @classmethod
    def from_environment(cls, root: Path = ROOT) -> Infra:
        """KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, REDIS_URL, else `.infra/env` of infra-up."""
        values: dict[str, str] = {}
        env_file = root / ".infra" / "env"
        if env_file.exists():
            for line in env_file.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    values[key.strip()] = value.strip()
        for key in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"):
            if os.environ.get(key):
                values[key] = os.environ[key]
        missing = [
            k for k in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL") if k not in values
        ]
        if missing:
            raise SystemExit(f"[distributed] {', '.join(missing)} unknown: run `make infra-up`")
        return cls(values["KAFKA_BOOTSTRAP_SERVERS"], values["DATABASE_URL"], values["REDIS_URL"])


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


async def ensure_database(url: str) -> None:
    """Create the database of `url` when its server does not have it."""
    import asyncpg

    name = urlsplit(url).path.lstrip("/")
    admin = await asyncpg.connect(with_database(url, "postgres"))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
            log(f"created database {name}")
    finally:
        await admin.close()


@dataclass
class Layout:
    """Ports, environment and options of one distributed run."""

    infra: Infra
    gateway_port: int = 8000
    hj212_port: int = 9212
    environment: str = "development"
    host: str = "127.0.0.1"
    topics: dict[str, str] = field(default_factory=dict)
    """Canonical topic → name used (empty: the canonical names)."""
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per process name: more variables (tests: prefixes, timers)."""
    simulator: bool = True
    city_seed: int = 20241
    log_format: str = "text"

    def port(self, offset: int) -> int:
        return self.gateway_port + offset

    def url(self, name: str) -> str:
        offset = next(o for n, _, o in SERVICES if n == name)
        return f"http://{self.host}:{self.port(offset)}"

    def common_env(self) -> dict[str, str]:
        return {
            # set explicitly: outside `make run`/`make test` nothing may assume an environment
            "ECOWATT_ENVIRONMENT": self.environment,
            "ECOWATT_BUS_BACKEND": "kafka",
            "ECOWATT_KAFKA_BOOTSTRAP_SERVERS": self.infra.kafka,
            "ECOWATT_DATABASE_URL": self.infra.database_url,
            "ECOWATT_REDIS_URL": self.infra.redis_url,
            "ECOWATT_HTTP_HOST": self.host,
            "ECOWATT_LOG_FORMAT": self.log_format,
        }

    def processes(self) -> list[Process]:
        """Every process of the run, in start order."""
        result = []
        for name, module, offset in SERVICES:
            env = {
                **self.common_env(),
                "ECOWATT_HTTP_PORT": str(self.port(offset)),
                "ECOWATT_INSTANCE_ID": f"{name}-1",
            }
            for topic, variable in TOPIC_VARIABLES.get(name, {}).items():
                if topic in self.topics:
                    env[variable] = self.topics[topic]
            if name == "auth":
                if self.environment in ("development", "test"):
                    # plain HTTP on the loopback interface, as `make run` (refused in production)
                    env["ECOWATT_AUTH_COOKIE_SECURE"] = "false"
                env["ECOWATT_GATEWAY_HOST"] = self.host
                env["ECOWATT_GATEWAY_PORT"] = str(self.gateway_port)
                env["ECOWATT_GATEWAY_UPSTREAMS"] = json.dumps(
                    {n: self.url(n) for n, _, _ in SERVICES if n != "auth"}
                )
            if name == "ingest-hj212":
                env["ECOWATT_HJ212_HOST"] = self.host
                env["ECOWATT_HJ212_PORT"] = str(self.hj212_port)
            if name == "registry" and self.simulator:
                env["ECOWATT_REGISTRY_SEED_CITY"] = "true"
                env["ECOWATT_REGISTRY_SEED"] = str(self.city_seed)
            if name == "ops":
                env["ECOWATT_OPS_SERVICE_URLS"] = ",".join(
                    f"{n}={self.url(n)}" for n, _, _ in SERVICES if n != "ops"
                )
                if self.topics:
                    env["ECOWATT_OPS_DLQ_TOPICS"] = ",".join(
                        f"{t}.dlq" for t in sorted(self.topics.values())
                    )
            env.update(self.extra_env.get(name, {}))
            result.append(Process(name, ["-m", module], env, ready_url=f"{self.url(name)}/readyz"))
        if self.simulator:
            result.append(
                Process(
                    "simulator",
                    [
                        str(Path(__file__).resolve()),
                        "simulate",
                        "--bootstrap",
                        self.infra.kafka,
                        "--target",
                        f"{self.host}:{self.hj212_port}",
                        "--city-seed",
                        str(self.city_seed),
                        "--registry-topic",
                        self.topics.get("registry.changes", "registry.changes"),
                    ],
                    {"ECOWATT_ENVIRONMENT": self.environment},
                    ready_url=None,
                )
            )
        return result


# ----------------------------------------------------------------------------- supervision


@dataclass
class Process:
    """One supervised child: `python <argv>` with `env` added to the supervisor's own."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str | None
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    wanted: bool = True
    died_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def http_ready(url: str, timeout: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class Supervisor:
    """Starts, watches, restarts and stops a list of processes (see the module docstring)."""

    def __init__(
        self,
        processes: Sequence[Process],
        *,
        restart_delay_s: float = 2.0,
        output: Callable[[str], None] | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        self.processes = {p.name: p for p in processes}
        self.restart_delay_s = restart_delay_s
        self.ready_timeout_s = ready_timeout_s
        self.output = output or (lambda line: print(line, flush=True))
        self.width = max((len(n) for n in self.processes), default=8)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._monitor: threading.Thread | None = None

    # -- starting

    def _spawn(self, process: Process) -> None:
        process.popen = subprocess.Popen(
            [sys.executable, *process.argv],
            env={**os.environ, **process.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only
        )
        assert process.popen.stdout is not None
        threading.Thread(
            target=self._pump, args=(process.name, process.popen.stdout), daemon=True
        ).start()
        log(f"{process.name}: started (pid {process.popen.pid})")

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        prefix = f"{name:>{self.width}} | "
        for raw in iter(stream.readline, b""):
            self.output(prefix + raw.decode(errors="replace").rstrip())

    def wait_ready(self, name: str, timeout_s: float | None = None) -> float:
        """Seconds until `name` answers /readyz with 200 (raises if it dies or times out)."""
        process = self.processes[name]
        started = time.monotonic()
        deadline = started + (timeout_s or self.ready_timeout_s)
        while time.monotonic() < deadline and not self._stopping.is_set():
            if process.ready_url is None or http_ready(process.ready_url):
                if process.ready_url is not None:
                    log(f"{name}: ready in {time.monotonic() - started:.1f} s")
                return time.monotonic() - started
            if (
                process.popen is not None
                and process.popen.poll() is not None
                and process.restarts == 0
            ):
                raise RuntimeError(f"{name} exited with {process.popen.returncode} before ready")
            time.sleep(0.5)
        raise TimeoutError(f"{name} not ready within {timeout_s or self.ready_timeout_s:.0f} s")

    def start(self, names: Iterable[str] | None = None) -> None:
        """Start the processes (all, or `names`) in order, each once the previous is ready."""
        for name in names or list(self.processes):
            if self._stopping.is_set():
                return
            with self._lock:
                self._spawn(self.processes[name])
            self.wait_ready(name)
        if self._monitor is None:
            self._monitor = threading.Thread(target=self._watch, daemon=True)
            self._monitor.start()

    # -- watching

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for process in self.processes.values():
                with self._lock:
                    if self._stopping.is_set() or process.popen is None or process.alive:
                        continue
                    now = time.monotonic()
                    if process.died_at is None:
                        process.died_at = now
                        log(f"{process.name}: exited with {process.popen.returncode}")
                    delay = min(
                        self.restart_delay_s * 2 ** min(process.restarts, 5), MAX_RESTART_DELAY_S
                    )
                    if process.wanted and now - process.died_at >= delay:
                        process.restarts += 1
                        process.died_at = None
                        log(f"{process.name}: restarting (restart {process.restarts})")
                        self._spawn(process)

    def kill(self, name: str) -> None:
        """SIGKILL one process (it is restarted like a crashed one)."""
        process = self.processes[name]
        if process.popen is not None and process.alive:
            log(f"{name}: SIGKILL")
            process.popen.kill()
            process.popen.wait()

    # -- stopping

    def stop(self) -> dict[str, int | None]:
        """Stop everything in reverse start order; return each process's exit code."""
        self._stopping.set()
        codes: dict[str, int | None] = {}
        with self._lock:
            for process in reversed(list(self.processes.values())):
                popen = process.popen
                if popen is None:
                    continue
                if popen.poll() is None:
                    log(f"{process.name}: stopping")
                    popen.send_signal(signal.SIGTERM)
                    try:
                        popen.wait(timeout=STOP_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        log(f"{process.name}: did not stop within {STOP_TIMEOUT_S:.0f} s, SIGKILL")
                        popen.kill()
                        popen.wait()
                codes[process.name] = popen.returncode
        return codes

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------- commands


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def run(args: argparse.Namespace) -> int:
    infra = Infra.from_environment()
    infra = Infra(
        infra.kafka,
        with_database(infra.database_url, args.database),
        with_redis_db(infra.redis_url, args.redis_db),
    )
    asyncio.run(ensure_database(infra.database_url))
    layout = Layout(
        infra,
        gateway_port=args.http_port,
        hj212_port=args.hj212_port,
        environment=args.environment,
        simulator=not args.no_simulator,
        city_seed=args.city_seed,
    )
    processes = layout.processes()
    busy = [
        str(port)
        for port in (
            *(layout.port(o) for _, _, o in SERVICES),
            layout.hj212_port,
            layout.gateway_port,
        )
        if not port_free(layout.host, port)
    ]
    if busy:
        raise SystemExit(
            f"[distributed] ports in use: {', '.join(busy)} (ECOWATT_HTTP_PORT moves them)"
        )
    supervisor = Supervisor(processes)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    gateway = f"http://{layout.host}:{layout.gateway_port}"
    starter = threading.Thread(target=_start_quietly, args=(supervisor, stop, gateway), daemon=True)
    starter.start()
    log(
        "starting: "
        + ", ".join(f"{p.name}" for p in processes)
        + f" (database {urlsplit(infra.database_url).path[1:]}, Ctrl-C stops everything)"
    )
    stop.wait()
    log("stopping every process")
    codes = supervisor.stop()
    log("stopped: " + ", ".join(f"{n} {c}" for n, c in codes.items()))
    return 0


def _start_quietly(supervisor: Supervisor, stop: threading.Event, gateway: str) -> None:
    try:
        supervisor.start()
    except (RuntimeError, TimeoutError) as exc:
        log(f"start failed: {exc}")
        stop.set()
        return
    urls = [
        f"{p.name} {p.ready_url.removesuffix('/readyz')}"
        for p in supervisor.processes.values()
        if p.ready_url
    ]
    log("every process is up: " + "; ".join(urls))
    log(
        f"the gateway: {gateway}/ — log in as admin (password printed by auth at its first "
        "start, or ECOWATT_ADMIN_PASSWORD); every service at /api/<service>/…"
    )


def simulate(args: argparse.Namespace) -> int:
    """The device simulator playing the registry's synthetic city (as `make run` does)."""
    from ecowatt_kernel.bus import KafkaBus, KafkaConnection
    from ecowatt_kernel.logging import configure_logging
    from ecowatt_simulator import DeviceSettings, FaultConfig, run_against_platform
    from ecowatt_standalone.gateway import SIMULATED_FAULTS

    configure_logging(service="simulator", level="INFO", fmt="text")
    host, _, port = args.target.rpartition(":")

    async def main() -> None:
        bus = KafkaBus(KafkaConnection(bootstrap_servers=args.bootstrap, client_id="simulator"))
        await bus.start()
        try:
            await run_against_platform(
                bus,
                host,
                int(port),
                args.city_seed,
                topic=args.registry_topic,
                faults=FaultConfig(
                    shares=dict.fromkeys(SIMULATED_FAULTS, args.fault_share),
                    showcase_from=time.time(),
                ),
                settings=DeviceSettings(report_on_connect=True),
                group_prefix="distributed-simulator",
            )
        finally:
            await bus.stop()

    task: asyncio.Task[None] | None = None

    async def guarded() -> None:
        nonlocal task
        task = asyncio.create_task(main())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(guarded())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    r = commands.add_parser("run", help="every service in its own process")
    r.add_argument(
        "--http-port", type=int, default=int(os.environ.get("ECOWATT_HTTP_PORT", "8000"))
    )
    r.add_argument(
        "--hj212-port", type=int, default=int(os.environ.get("ECOWATT_HJ212_PORT", "9212"))
    )
    r.add_argument("--environment", default=os.environ.get("ECOWATT_ENVIRONMENT", "development"))
    r.add_argument("--database", default="ecowatt_distributed")
    r.add_argument("--redis-db", type=int, default=1)
    r.add_argument("--city-seed", type=int, default=20241)
    r.add_argument("--no-simulator", action="store_true")
    s = commands.add_parser("simulate", help="the simulated devices (a process of `run`)")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--target", required=True)
    s.add_argument("--city-seed", type=int, required=True)
    s.add_argument("--registry-topic", default="registry.changes")
    s.add_argument("--fault-share", type=float, default=0.03)
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else simulate(args)


if __name__ == "__main__":
    sys.exit(main())
