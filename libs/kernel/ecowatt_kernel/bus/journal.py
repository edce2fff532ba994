"""The write-ahead journal behind `DiskBus`: one append-only segment, group commit, checkpoints.

The folder (one process at a time: `LOCK` is held with `flock`):

    LOCK                               the owner's pid
    segment-000000000007.log           the live segment: a checkpoint, then appended entries
    segment-000000000008.log.partial   a checkpoint being written (removed at start)

The entries and their encoding: `bus/segment.py`.

**Durability.** `write(data)` returns once `data` is on disk (`write` + `fdatasync`). Writes
that arrive while one is in progress go out together with the next `fdatasync`: concurrent
publishers share one (group commit). A failed write (ENOSPC, EROFS, EIO, EFBIG …) is cut back
to the last durable byte, so a good entry never follows a torn one; its callers get the
`OSError` and nothing of it counts as written.

**Recovery** reads the newest segment. A torn tail — a write that never reached `fdatasync`,
so was never acknowledged — is cut off. A corrupt entry followed by more bytes is not
expected (the file is only appended after a durable prefix); it also ends the segment, is
logged as an error and the rest is kept aside in `<segment>.corrupt` for inspection.

**Checkpoints.** Once the segment has grown by `checkpoint_bytes` (or by the size of its own
checkpoint, if larger) the owner's live state — retained records, committed offsets, next
offsets — is written to the next segment (`.partial`, `fdatasync`, rename, folder `fsync`)
and the old one deleted. The disk therefore holds the live set plus what was appended since.
A checkpoint that cannot be written (disk full) is retried later; appends go on meanwhile.

"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter as MetricCounter
from prometheus_client import Gauge, Histogram

from ecowatt_kernel.bus.segment import (
    SEGMENT_PREFIX,
    SEGMENT_SUFFIX,
    Checkpoint,
    Entry,
    checkpoint_entries,
    read_segment,
)
from ecowatt_kernel.bus.types import BusUnavailableError
from ecowatt_kernel.metrics import LATENCY_BUCKETS

__all__ = ["Journal"]

_logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
SYNC_EVERY = 2**21
"""Bytes of a checkpoint written between two syncs: with ext4's ordered journaling a commit's
`fdatasync` also waits for other files' dirty data, so the checkpoint keeps little of it."""

FSYNC_SECONDS = Histogram(
    "ecowatt_bus_log_fsync_seconds",
    "Time of one group commit of the bus log (write + fdatasync).",
    buckets=LATENCY_BUCKETS,
)
GROUP_COMMIT_WRITES = Histogram(
    "ecowatt_bus_log_group_commit_writes",
    "Write calls (publishes and commits) made durable by one fdatasync.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
WRITE_FAILURES = MetricCounter(
    "ecowatt_bus_log_write_failures_total",
    "Group commits of the bus log that failed (disk full, read-only, I/O error).",
    ["errno"],
)
SEGMENT_BYTES = Gauge("ecowatt_bus_log_segment_bytes", "Size of the live bus log segment.")
CHECKPOINTS = MetricCounter(
    "ecowatt_bus_log_checkpoints_total", "Checkpoints of the bus log.", ["outcome"]
)


# ------------------------------------------------------------------------------ journal


@dataclass
class _Write:
    data: bytes
    future: asyncio.Future[None]
    on_durable: Callable[[], None] | None


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a failure as seen: whoever awaits the future still gets it."""
    if not future.cancelled():
        future.exception()


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` (the one place the journal writes; tests inject faults)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync(fd: int) -> None:
    os.fdatasync(fd)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """One folder's write-ahead journal; see the module docstring."""

    def __init__(self, folder: Path, *, checkpoint_bytes: int = 64 * 2**20) -> None:
        self.folder = folder
        self.checkpoint_bytes = checkpoint_bytes
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._sequence = 0
        self._size = 0
        self._checkpoint_size = 0
        self._broken_tail = False
        self._pending: list[_Write] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._snapshot: Callable[[], Checkpoint] | None = None
        self._next_checkpoint_try = 0.0
        self._checkpoint_requests: list[asyncio.Future[bool]] = []
        self._job: _CheckpointJob | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.last_failure: Exception | None = None
        """The error of the latest group commit, None once one succeeds again."""
        self._io = threading.Lock()  # held by the thread writing, so `abandon` waits for it

    # ---------------------------------------------------------------------- open, recover

    @property
    def path(self) -> Path:
        return self.folder / f"{SEGMENT_PREFIX}{self._sequence:012d}{SEGMENT_SUFFIX}"

    @property
    def writable(self) -> bool:
        """True while open for writing and the latest group commit succeeded."""
        return self._task is not None and not self._closing and self.last_failure is None

    @property
    def size(self) -> int:
        """Bytes of the live segment."""
        return self._size

    def open(self) -> list[Entry]:
        """Lock the folder, recover the newest segment and open it for appending; returns
        its entries (raises BusUnavailableError when the folder cannot be used)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock()
            entries = self._recover()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            self._release()
            raise BusUnavailableError(
                f"the bus log folder {self.folder} cannot be used: {exc.strerror or exc}"
                f" [errno {exc.errno}]"
            ) from exc
        SEGMENT_BYTES.set(self._size)
        return entries

    def _lock(self) -> None:
        fd = os.open(self.folder / "LOCK", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BusUnavailableError(
                f"the bus log folder {self.folder} is in use by another process (pid {owner})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # (closing releases the flock)
            self._lock_fd = None

    def _segments(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.folder.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"):
            number = path.name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
            if number.isdigit():
                found.append((int(number), path))
        return sorted(found)

    def _recover(self) -> list[Entry]:
        for partial in self.folder.glob(f"*{PARTIAL_SUFFIX}"):
            partial.unlink()  # a checkpoint interrupted before its rename: the old one holds all
        segments = self._segments()
        if not segments:
            self._sequence = 1
            self.path.touch(mode=0o640)
            _fsync_folder(self.folder)
            self._size = self._checkpoint_size = 0
            return []
        self._sequence, newest = segments[-1]
        for _, older in segments[:-1]:
            older.unlink()  # superseded by the newest checkpoint (its delete did not happen)
        read = read_segment(newest)
        if read.problem is not None:
            level = logging.WARNING if read.problem.startswith("a partial") else logging.ERROR
            _logger.log(
                level,
                "bus log %s: %s at byte %d; the %d bytes from there were never acknowledged"
                " and are cut off",
                newest,
                read.problem,
                read.good_bytes,
                read.torn_bytes,
            )
            if level == logging.ERROR:
                with newest.open("rb") as source:
                    source.seek(read.good_bytes)
                    newest.with_name(newest.name + ".corrupt").write_bytes(source.read())
            os.truncate(newest, read.good_bytes)
        self._size = read.good_bytes
        self._checkpoint_size = self._size
        return read.entries

    # ---------------------------------------------------------------------- writing

    def start(self, snapshot: Callable[[], Checkpoint]) -> None:
        """Start the group-commit writer; `snapshot` gives the live state for checkpoints."""
        if self._fd is None:
            self._reopen()
        self._snapshot = snapshot
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bus-log:writer")

    def _reopen(self) -> None:
        try:
            self._lock()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            self._release()
            raise BusUnavailableError(
                f"the bus log folder {self.folder} cannot be used: {exc.strerror or exc}"
            ) from exc

    def submit(
        self, data: bytes, on_durable: Callable[[], None] | None = None
    ) -> asyncio.Future[None]:
        """Queue `data`; the future completes once it is durable (`on_durable` runs first,
        in journal order) or fails with the OSError of its group commit."""
        if self._task is None or self._closing:
            raise BusUnavailableError("the bus log is not open for writing")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._pending.append(_Write(data, future, on_durable))
        self._wake.set()
        return future

    async def write(self, data: bytes, on_durable: Callable[[], None] | None = None) -> None:
        """Return once `data` is durable (raises the OSError of a failed group commit)."""
        await asyncio.shield(self.submit(data, on_durable))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending or self._checkpoint_due() or self._checkpoint_written():
                if self._pending:
                    batch, self._pending = self._pending, []
                    await self._commit(batch)
                if self._job is None and self._checkpoint_due():
                    try:
                        self._begin_checkpoint()
                    except Exception:
                        _logger.exception("bus log: a checkpoint could not start")
                        self._next_checkpoint_try = time.monotonic() + 60.0
                        for request in self._checkpoint_requests:
                            request.set_result(False)
                        self._checkpoint_requests.clear()
                if self._checkpoint_written():
                    await self._finish_checkpoint()
            if self._closing:
                await self._drop_checkpoint()
                return

    async def _commit(self, batch: list[_Write]) -> None:
        data = batch[0].data if len(batch) == 1 else b"".join(w.data for w in batch)
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._write_durably, data)
        except Exception as exc:  # (OSError expected; anything else must not stop the writer)
            code = getattr(exc, "errno", None) or 0
            WRITE_FAILURES.labels(errno.errorcode.get(code, str(code))).inc()
            if self.last_failure is None:
                _logger.error("bus log %s: write failed, publishing stops: %s", self.path, exc)
            self.last_failure = exc
            for write in batch:
                if not write.future.done():
                    write.future.set_exception(exc)
            return
        FSYNC_SECONDS.observe(time.perf_counter() - started)
        if self.last_failure is not None:
            _logger.warning("bus log %s: writes succeed again", self.path)
            self.last_failure = None
        GROUP_COMMIT_WRITES.observe(len(batch))
        SEGMENT_BYTES.set(self._size)
        for write in batch:
            if write.on_durable is not None:
                try:
                    write.on_durable()
                except Exception:  # the writer must go on whatever a callback does
                    _logger.exception("bus log: a durable-write callback failed")
            if not write.future.done():
                write.future.set_result(None)

    def _write_durably(self, data: bytes) -> None:  # (in a worker thread)
        with self._io:
            self._write_locked(data)

    def _write_locked(self, data: bytes) -> None:
        fd = self._fd
        if fd is None:
            raise OSError(errno.EBADF, "the bus log is closed")
        try:
            if self._broken_tail:
                os.ftruncate(fd, self._size)
                self._broken_tail = False
            _write_all(fd, data)
            _sync(fd)
        except OSError:
            # Cut the file back to its durable prefix; if even that fails, do it before the
            # next write. Either way nothing of this write counts.
            self._broken_tail = True
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
                self._broken_tail = False
            raise
        self._size += len(data)

    # ---------------------------------------------------------------------- checkpoints

    def _checkpoint_due(self) -> bool:
        if self._job is not None or self._snapshot is None or self._closing:
            return False
        if self._checkpoint_requests:
            return True
        grown = self._size - self._checkpoint_size
        return (
            grown >= max(self.checkpoint_bytes, self._checkpoint_size)
            and time.monotonic() >= self._next_checkpoint_try
        )

    def _checkpoint_written(self) -> bool:
        return self._job is not None and self._job.task.done()

    async def checkpoint(self) -> bool:
        """Write a checkpoint now; False when it could not be written."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._checkpoint_requests.append(future)
        self._wake.set()
        return await future

    def _begin_checkpoint(self) -> None:
        """Take the live state (it matches the journal up to here) and write it to the next
        segment while group commits go on appending to the live segment."""
        assert self._snapshot is not None
        state = self._snapshot()
        target = self.folder / f"{SEGMENT_PREFIX}{self._sequence + 1:012d}{SEGMENT_SUFFIX}"
        requests, self._checkpoint_requests = self._checkpoint_requests, []
        task = asyncio.get_running_loop().create_task(
            self._prepare_checkpoint(state, target, self._size), name="bus-log:checkpoint"
        )
        task.add_done_callback(lambda _: self._wake.set())
        self._job = _CheckpointJob(target, self._size, len(state.records), task, requests)

    async def _prepare_checkpoint(
        self, state: Checkpoint, target: Path, position: int
    ) -> tuple[int, int]:
        """The body, then what the live segment gained meanwhile, copied behind it until
        little is left (the writer copies the rest while it switches). Returns the body's
        size and the live segment's offset copied up to."""
        partial = _partial(target)
        body = await _write_checkpoint_body(state, partial)
        copied = await asyncio.to_thread(self._copy_tail, partial, position)
        return body, copied

    def _copy_tail(self, partial: Path, position: int) -> int:  # (in a worker thread)
        copied = position
        fd = os.open(partial, os.O_WRONLY | os.O_APPEND)
        try:
            while self._size - copied >= 2**20:
                copied = _copy_range(self.path, copied, self._size, fd)
            _sync(fd)
        finally:
            os.close(fd)
        return copied

    async def _finish_checkpoint(self) -> None:
        """Copy the last of what was appended behind the checkpoint, make it durable, switch."""
        job = self._job
        assert job is not None
        self._job = None
        try:
            body, copied = job.task.result()
            size, old = await asyncio.to_thread(self._complete_checkpoint, job, body, copied)
        except Exception as exc:  # (OSError expected; the writer must go on whatever it is)
            with contextlib.suppress(OSError):
                _partial(job.target).unlink()
            CHECKPOINTS.labels("failed").inc()
            self._next_checkpoint_try = time.monotonic() + 60.0
            _logger.warning(
                "bus log checkpoint into %s failed (%s); appending to %s meanwhile",
                job.target,
                exc,
                self.path,
            )
            job.resolve(False)
            return
        CHECKPOINTS.labels("written").inc()
        SEGMENT_BYTES.set(self._size)
        _logger.info(
            "bus log checkpoint: %s (%d records, %.1f MiB)",
            job.target.name,
            job.records,
            size / 2**20,
        )
        # (freeing a big file's blocks takes a while: not on the writer's way; whoever asked
        # for this checkpoint hears once the old segment is gone)
        unlink = asyncio.get_running_loop().create_task(asyncio.to_thread(_unlink, old))
        self._background.add(unlink)
        unlink.add_done_callback(self._background.discard)
        unlink.add_done_callback(lambda _: job.resolve(True))

    def _complete_checkpoint(self, job: _CheckpointJob, body: int, copied: int) -> tuple[int, Path]:
        with self._io:
            partial = _partial(job.target)
            fd = os.open(partial, os.O_WRONLY | os.O_APPEND)
            try:
                if self._size > copied:
                    _copy_range(self.path, copied, self._size, fd)
                _sync(fd)
            finally:
                os.close(fd)
            os.rename(partial, job.target)
            _fsync_folder(self.folder)
            old_fd, old_path = self._fd, self.path
            self._fd = os.open(job.target, os.O_WRONLY | os.O_APPEND)
            self._sequence += 1
            self._size = body + max(self._size - job.position, 0)
            self._checkpoint_size = body
            self._broken_tail = False
            if old_fd is not None:
                os.close(old_fd)
            return self._size, old_path

    async def _drop_checkpoint(self) -> None:
        job, self._job = self._job, None
        if job is None:
            return
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await job.task
        with contextlib.suppress(OSError):
            _partial(job.target).unlink()
        job.resolve(False)

    # ---------------------------------------------------------------------- closing

    async def close(self) -> None:
        """Write what is queued, stop the writer, release the folder."""
        if self._task is not None:
            self._closing = True
            self._wake.set()
            await self._task
            self._task = None
        self._release()

    def abandon(self) -> None:
        """Stop at once, as a crash would: queued writes are lost, the folder released."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for write in self._pending:
            if not write.future.done():
                write.future.set_exception(BusUnavailableError("the bus log was abandoned"))
        self._pending.clear()
        for request in self._checkpoint_requests:
            if not request.done():
                request.set_result(False)
        self._checkpoint_requests.clear()
        if self._job is not None:  # (its thread may still write: let it end on its own)
            self._job.resolve(False)
            self._job = None
        with self._io:
            self._release()


@dataclass
class _CheckpointJob:
    target: Path
    position: int
    """Size of the live segment when the state was taken: what follows is copied behind."""
    records: int
    task: asyncio.Task[tuple[int, int]]
    requests: list[asyncio.Future[bool]]

    def resolve(self, written: bool) -> None:
        for request in self.requests:
            if not request.done():
                request.set_result(written)


def _copy_range(source: Path, start: int, end: int, fd: int) -> int:
    """Append bytes [start, end) of `source` to `fd`; returns `end`."""
    reader = os.open(source, os.O_RDONLY)
    try:
        position = start
        while position < end:
            chunk = os.pread(reader, min(end - position, 2**22), position)
            if not chunk:
                raise OSError(errno.EIO, f"{source} is shorter than written")
            _write_all(fd, chunk)
            position += len(chunk)
    finally:
        os.close(reader)
    return end


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _partial(target: Path) -> Path:
    return target.with_name(target.name + PARTIAL_SUFFIX)


async def _write_checkpoint_body(state: Checkpoint, partial: Path) -> int:
    """Write the checkpoint entries to `partial` and make them durable.

    It runs beside the group commits: entries are encoded on the event loop a chunk at a
    time (encoding in a thread would hold the GIL against the loop for the whole checkpoint)
    and written and synced in a thread, every 16 MiB (one big flush at the end would hold
    the disk, and the commits' `fdatasync`s behind it, for as long as the checkpoint)."""
    size = unsynced = 0
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        entries = checkpoint_entries(state)
        while True:
            chunk: list[bytes] = []
            chunk_bytes = 0
            for data in entries:
                chunk.append(data)
                chunk_bytes += len(data)
                if chunk_bytes >= 2**20:
                    break
            if not chunk:
                break
            await asyncio.to_thread(_write_all, fd, b"".join(chunk))
            size += chunk_bytes
            unsynced += chunk_bytes
            if unsynced >= SYNC_EVERY:
                await asyncio.to_thread(_sync, fd)
                unsynced = 0
        await asyncio.to_thread(_sync, fd)
    except BaseException:
        os.close(fd)
        _unlink(partial)
        raise
    os.close(fd)
    return size
