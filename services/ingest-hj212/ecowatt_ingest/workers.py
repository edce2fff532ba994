"""Several processes behind one HJ 212 port: `ECOWATT_INGEST_WORKERS`.

One Python process decodes, judges and publishes frames on one core; a second process on
another core doubles what a host takes. Each worker is a full `IngestServer`
(`python -m ecowatt_ingest.tcp` with `ECOWATT_INGEST_WORKER_INDEX` set) that binds the same
port with SO_REUSEPORT, so the kernel spreads new connections over the workers' listening
sockets; a connection stays with the worker that accepted it. What a device needs across
connections lives in Redis, which every worker shares: its session (the newest binding owns
the device's hash and the other workers close their older connection of it), its recent
uploads (the duplicate check), the command claim and owner (reverse commands reach the
worker holding the device). Each worker is an instance of its own (`<instance_id>-w<k>`):
its own command consumer group, heartbeat and sessions set.

The kernel's `WorkerPool` (`ecowatt_kernel.workers`, `ingest_pool`) starts workers, waits
until each prints `ready <port>`, restarts one that dies (after a pause that grows while it
keeps dying) and stops them with SIGTERM, which lets each answer what is durable and retire
its sessions. Standalone (an in-process bus) runs one.
"""

from __future__ import annotations

import socket

from ecowatt_kernel.workers import WorkerPool

__all__ = ["WorkerPool", "ingest_pool", "reserve_port"]


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to `port` with SO_REUSEPORT: picks a free port for
    `port` 0 and holds it while the workers bind theirs; the kernel only hands connections
    to listening sockets, so it takes none."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def ingest_pool(indexes: range, *, port: int) -> WorkerPool:
    """The kernel's `WorkerPool` of ingest workers (`python -m ecowatt_ingest.tcp`) on `port`."""
    return WorkerPool(
        "ecowatt_ingest.tcp",
        indexes,
        index_variable="ECOWATT_INGEST_WORKER_INDEX",
        extra_env={"ECOWATT_HJ212_PORT": str(port)},
    )
