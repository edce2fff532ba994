"""A private single-node Kafka broker for tests that take the broker away (shared fixture).

`tools/infra.py`'s `Kafka`, relocated with ECOWATT_INFRA_DIR and ECOWATT_INFRA_KAFKA_PORT
into the test's temporary folder, started with `up()`, stopped with `kill()` (SIGTERM, then
SIGKILL) and started again on the same data. The broker's jars come from ECOWATT_KAFKA_LIBS,
or the project's `.infra/kafka/libs` (`make infra-up`), else tools/infra.py fetches them.

Used by the ingest outage test and the end-to-end tests (`tests/e2e`), which import the
`private_kafka` fixture into their conftest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PrivateKafka", "private_kafka"]

ROOT = Path(__file__).resolve().parents[3]


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port < 65000:
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


class PrivateKafka:
    """One broker of the test's own (KRaft controller on `port + 1`)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.port = _free_port_pair()
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")
        }
        self.env |= {"ECOWATT_INFRA_DIR": str(home), "ECOWATT_INFRA_KAFKA_PORT": str(self.port)}
        libs = os.environ.get("ECOWATT_KAFKA_LIBS") or str(ROOT / ".infra" / "kafka" / "libs")
        if Path(libs, ".complete").exists():
            (home / "kafka").mkdir(parents=True, exist_ok=True)
            (home / "kafka" / "libs").symlink_to(libs)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self, attempts: int = 2) -> None:
        """Start the broker (again, on the same data) and wait until it answers.

        On a loaded machine a JVM start (the storage format or the broker) sometimes fails:
        it is tried again; the output of the last attempt is in `infra-up.log`."""
        log = self.home / "infra-up.log"
        for attempt in range(1, attempts + 1):
            with log.open("w") as out:
                done = subprocess.run(
                    [sys.executable, str(ROOT / "tools" / "infra.py"), "up", "--only", "kafka"],
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=240,
                )
            if done.returncode == 0:
                return
            if attempt < attempts:
                with contextlib.suppress(OSError, ValueError):
                    self.kill(signal.SIGKILL, wait_s=10)
                time.sleep(2.0)
        raise RuntimeError(f"private Kafka did not start:\n{log.read_text()[-3000:]}")

    def pid(self) -> int:
        return int((self.home / "kafka" / "kafka.pid").read_text().split()[0])

    def kill(self, sig: int = signal.SIGTERM, wait_s: float = 60) -> None:
        """Stop the broker and wait until its process is gone."""
        pid = self.pid()
        os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[PrivateKafka]:
    """A broker of the test's own, killed at the end."""
    kafka = PrivateKafka(tmp_path / "infra")
    kafka.up()
    try:
        yield kafka
    finally:
        with contextlib.suppress(OSError, ValueError):
            kafka.kill(signal.SIGKILL, wait_s=10)
