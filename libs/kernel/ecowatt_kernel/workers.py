"""Several processes of one service (`ECOWATT_<SERVICE>_WORKERS`): the supervisor and the
consumer worker.

One Python process works on one core. A service whose work divides by key runs N worker
processes on a host: ingest behind one HJ 212 port (SO_REUSEPORT), validation and alarm as
members of their Kafka consumer groups, which divide the input topics' partitions among
them. The service process (`python -m ecowatt_<service>`, with its HTTP API) is worker 0; it
starts workers 1…N−1 with a `WorkerPool` and stops them when it stops. Standalone mode (an
in-process bus, which cannot be shared between processes) always runs one.

`WorkerPool` starts `python -m <module>` per index with `<index_variable>=<k>` in its
environment, waits until each prints a line starting with `ready`, restarts one that dies
(after a pause that grows while it keeps dying) and stops them with SIGTERM, which lets each
commit what it handled.

`run_worker(spec)` is such a consumer worker for a kernel service: the service's own
lifespan (`create_app`: infrastructure, migrations, the start-up hook subscribing its
consumers, the bus) without the HTTP server. It prints `ready` once its consumers run, stops
on SIGTERM or SIGINT, and also stops when the process that started it is gone (a SIGKILLed
service process must not leave workers behind that its successor would duplicate). Worker
k ≥ 1 has no HTTP port: with `ECOWATT_WORKER_METRICS_PORT` set it serves `/metrics` on that
port + k − 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping

from ecowatt_kernel.app import ServiceContext, ServiceSpec, create_app
from ecowatt_kernel.settings import KernelSettings

__all__ = [
    "INDEX_VARIABLE",
    "PARENT_VARIABLE",
    "WorkerPool",
    "run_worker",
    "serve_worker_metrics",
    "start_workers",
    "stop_workers",
    "watch_parent",
    "worker_main",
]

_logger = logging.getLogger(__name__)
PARENT_VARIABLE = "ECOWATT_WORKER_PARENT_PID"
"""Set by `WorkerPool`: the process a worker stops without (see `run_worker`)."""
INDEX_VARIABLE = "ECOWATT_WORKER_INDEX"
"""Set by `WorkerPool`: the worker's index, whatever the service calls its own variable."""


async def _pass_through(stream: asyncio.StreamReader) -> None:
    """Copy what a worker writes to stdout after `ready` (its pipe must not fill up)."""
    with contextlib.suppress(Exception):
        while line := await stream.readline():
            sys.stdout.buffer.write(line)
            sys.stdout.flush()


class WorkerPool:
    """See the module docstring."""

    def __init__(
        self,
        module: str,
        indexes: range,
        *,
        index_variable: str,
        env: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 180.0,
    ) -> None:
        self.module = module
        self.indexes = indexes
        self.index_variable = index_variable
        self.env = {**(os.environ if env is None else env), **(extra_env or {})}
        self.ready_timeout_s = ready_timeout_s
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._readers: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self) -> None:
        """Start every worker and wait until each is ready."""
        started = await asyncio.gather(*(self._spawn(k) for k in self.indexes))
        for index, process in zip(self.indexes, started, strict=True):
            self.processes[index] = process
        loop = asyncio.get_running_loop()
        self._watchers = [
            loop.create_task(self._watch(k), name=f"{self.module}:worker-{k}") for k in self.indexes
        ]

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        env = {
            **self.env,
            self.index_variable: str(index),
            INDEX_VARIABLE: str(index),
            PARENT_VARIABLE: str(os.getpid()),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, env=env, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(self.ready_timeout_s):
                while True:
                    line = await process.stdout.readline()
                    if not line:
                        raise RuntimeError(f"{self.module} worker {index} exited before ready")
                    if line.startswith(b"ready"):
                        break
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        _logger.info(
            "worker ready",
            extra={"worker_module": self.module, "worker": index, "pid": process.pid},
        )
        reader = asyncio.get_running_loop().create_task(_pass_through(process.stdout))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        return process

    async def _watch(self, index: int) -> None:
        pause = 1.0
        while True:
            process = self.processes[index]
            code = await process.wait()
            if self.stopping:
                return
            _logger.error(
                "worker exited: restarting",
                extra={"worker_module": self.module, "worker": index, "code": code},
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)
            try:
                self.processes[index] = await self._spawn(index)
                pause = 1.0
            except Exception as exc:
                _logger.error(
                    "worker restart failed",
                    extra={"worker_module": self.module, "error": repr(exc)},
                )

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every worker (each finishes and commits what it holds); kill stragglers."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        for process in self.processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                await asyncio.wait_for(process.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


_POOL_KEY = "worker_pool"


async def start_workers(
    context: ServiceContext, *, module: str, count: int, index_variable: str
) -> None:
    """From worker 0's start-up hook: start workers 1…`count`−1 (`python -m module`), kept in
    `context.state` until `stop_workers`."""
    if count <= 1:
        return
    pool = WorkerPool(module, range(1, count), index_variable=index_variable)
    await pool.start()
    context.state[_POOL_KEY] = pool


async def stop_workers(context: ServiceContext) -> None:
    """From worker 0's shutdown hook: stop the workers `start_workers` started."""
    pool = context.state.pop(_POOL_KEY, None)
    if isinstance(pool, WorkerPool):
        await pool.stop()


async def _parent_gone(parent: int) -> None:
    """Return once the process that started this one has exited (we were re-parented)."""
    while os.getppid() == parent:  # noqa: ASYNC110 - re-parenting signals nothing to wait on
        await asyncio.sleep(1.0)
    _logger.error("the service process that started this worker is gone: stopping")


def serve_worker_metrics(settings: KernelSettings) -> int | None:
    """Serve `/metrics` of worker k ≥ 1 on `worker_metrics_port` + k − 1 (a thread of
    prometheus-client's; worker 0 serves them on its HTTP port); the port, or None."""
    index = os.environ.get(INDEX_VARIABLE, "0")
    if settings.worker_metrics_port == 0 or not index.isdigit() or int(index) < 1:
        return None
    from prometheus_client import REGISTRY, start_http_server

    port = settings.worker_metrics_port + int(index) - 1
    start_http_server(port, addr=settings.http_host, registry=REGISTRY)
    _logger.info("worker metrics served", extra={"port": port})
    return port


def watch_parent(stop: asyncio.Event) -> asyncio.Task[None] | None:
    """Set `stop` when the process that started this worker is gone (a SIGKILLed service
    process must not leave workers behind that its successor would duplicate); None when
    this process was not started by a `WorkerPool`. Cancel the task when done."""
    parent = os.environ.get(PARENT_VARIABLE)
    if not parent or not parent.isdigit():
        return None
    watch = asyncio.get_running_loop().create_task(_parent_gone(int(parent)), name="worker:parent")
    watch.add_done_callback(lambda task: None if task.cancelled() else stop.set())
    return watch


async def run_worker(spec: ServiceSpec, settings: KernelSettings) -> None:
    """Run `spec`'s consumers (its lifespan without HTTP) until a signal or the parent's end."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    watch = watch_parent(stop)
    serve_worker_metrics(settings)
    app = create_app(spec, settings=settings)
    try:
        async with app.router.lifespan_context(app):
            print("ready", flush=True)
            await stop.wait()
    finally:
        if watch is not None:
            watch.cancel()


def worker_main(spec: ServiceSpec) -> None:
    """`python -m ecowatt_<service>.worker`: one consumer worker of the service."""
    from ecowatt_kernel.logging import configure_logging
    from ecowatt_kernel.settings import settings_or_exit

    settings = settings_or_exit(spec.settings_class)
    configure_logging(service=spec.name, level=settings.log_level, fmt=settings.log_format)
    asyncio.run(run_worker(spec, settings))
