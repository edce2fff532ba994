"""Reassemble split packets (PNUM/PNO): out of order, duplicates, timeouts, bounded memory."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from ._errors import ReassemblyError
from ._model import Frame
from ._reasons import Reason

SplitKey = tuple[Hashable, ...]


def split_key(frame: Frame) -> SplitKey:
    """Default key of a split set: ``(MN, ST, CN, PNUM, DataTime)``, else ``(…, QN)``.

    HJ 212-2017 gives every part its own QN (C.50: …534, …535) and repeats ``DataTime``, so
    keying on QN alone would never complete a standard set; devices that reuse one QN for
    all parts and send no ``DataTime`` (logs, 3020) are keyed on their QN instead.
    """
    data_time = frame.params.get("DataTime")
    if data_time is not None:
        return (frame.mn, frame.st, frame.cn, frame.pnum, "DataTime", data_time)
    return (frame.mn, frame.st, frame.cn, frame.pnum, "QN", frame.qn)


@dataclass(frozen=True, slots=True)
class SplitSet:
    """A complete set of parts, or an incomplete one given up on (expired or evicted)."""

    key: SplitKey
    pnum: int
    parts: tuple[Frame, ...]
    """Received parts ordered by PNO."""
    complete: bool
    missing: tuple[int, ...] = ()
    reason: Reason | None = None
    """``SET_EXPIRED`` or ``SET_EVICTED`` for incomplete sets."""
    duplicates: int = 0
    conflicts: int = 0
    """Parts that repeated a PNO with different content (the first one was kept)."""

    @property
    def items(self) -> list[tuple[str, str]]:
        """Items without a code once (first part wins), then every part's code items."""
        seen: dict[str, str] = {}
        coded: list[tuple[str, str]] = []
        for part in self.parts:
            for key, value in part.items:
                if "-" in key:
                    coded.append((key, value))
                else:
                    seen.setdefault(key, value)
        return [*seen.items(), *coded]

    @property
    def codes(self) -> dict[str, dict[str, str]]:
        """CP items of all parts grouped by code."""
        merged: dict[str, dict[str, str]] = {}
        for part in self.parts:
            for code, group in part.codes.items():
                merged.setdefault(code, {}).update(group)
        return merged


@dataclass(slots=True)
class _Pending:
    pnum: int
    parts: dict[int, Frame]
    touched: float
    size: int = 0
    duplicates: int = 0
    conflicts: int = 0
    digests: set[int] = field(default_factory=set)


class Reassembler:
    """Collect split parts until each set is complete.

    ``add`` returns a :class:`SplitSet` when a frame completes one (an unsplit frame is a
    complete set of one), ``None`` while parts are missing or for a repeated part.  Call
    ``expire`` periodically: it returns sets idle for ``timeout`` seconds (by ``clock``) and
    sets evicted to keep within ``max_open_sets`` / ``max_buffered_bytes``.  A part that
    repeats an already completed set within ``timeout`` counts as a duplicate (devices re-send
    when an answer is lost: answer it again, store idempotently).
    """

    def __init__(
        self,
        *,
        timeout: float = 40.0,
        max_open_sets: int = 1024,
        max_buffered_bytes: int = 8 * 1024 * 1024,
        max_parts: int = 9999,
        clock: Callable[[], float] = time.monotonic,
        key: Callable[[Frame], SplitKey] = split_key,
    ) -> None:
        self._timeout = timeout
        self._max_open = max_open_sets
        self._max_bytes = max_buffered_bytes
        self._max_parts = max_parts
        self._clock = clock
        self._key = key
        self._open: dict[SplitKey, _Pending] = {}
        self._done: dict[SplitKey, tuple[float, frozenset[int]]] = {}
        self._given_up: list[SplitSet] = []
        self._bytes = 0
        #: parts dropped as repeats of an already completed set
        self.late_duplicates = 0

    @property
    def open_sets(self) -> int:
        """Sets still waiting for parts."""
        return len(self._open)

    @property
    def buffered_bytes(self) -> int:
        """Raw bytes held in open sets."""
        return self._bytes

    def add(self, frame: Frame) -> SplitSet | None:
        """Add a decoded frame; return the set it completes, if any."""
        pnum, pno = frame.pnum, frame.pno
        if pnum is None and pno is None:
            return SplitSet(key=self._key(frame), pnum=1, parts=(frame,), complete=True)
        if pnum is None or pno is None or not 1 <= pno <= pnum <= self._max_parts:
            raise ReassemblyError(
                Reason.PART_NUMBER_INVALID,
                f"PNUM={frame.header.get('PNUM')!r} PNO={frame.header.get('PNO')!r}:"
                f" need 1 <= PNO <= PNUM <= {self._max_parts}",
            )
        key = self._key(frame)
        now = self._clock()
        digest = hash(frame.segment)
        done = self._done.get(key)
        if done is not None:
            if done[0] > now and digest in done[1]:
                self.late_duplicates += 1
                return None
            del self._done[key]
        if pnum == 1:
            self._remember_done(key, frozenset({digest}), now)
            return SplitSet(key=key, pnum=1, parts=(frame,), complete=True)
        pending = self._open.get(key)
        if pending is None:
            pending = _Pending(pnum=pnum, parts={}, touched=now)
            self._open[key] = pending
        else:
            # keep insertion order = least recently touched first (eviction order)
            self._open[key] = self._open.pop(key)
        pending.touched = now
        if pno in pending.parts:
            if digest in pending.digests:
                pending.duplicates += 1
            else:
                pending.conflicts += 1
            return None
        pending.parts[pno] = frame
        pending.digests.add(digest)
        pending.size += len(frame.raw)
        self._bytes += len(frame.raw)
        if len(pending.parts) == pnum:
            del self._open[key]
            self._bytes -= pending.size
            self._remember_done(key, frozenset(pending.digests), now)
            return SplitSet(
                key=key,
                pnum=pnum,
                parts=tuple(pending.parts[n] for n in sorted(pending.parts)),
                complete=True,
                duplicates=pending.duplicates,
                conflicts=pending.conflicts,
            )
        self._enforce_bounds(keep=key)
        return None

    def expire(self) -> list[SplitSet]:
        """Return incomplete sets that timed out or were evicted since the last call."""
        now = self._clock()
        given_up, self._given_up = self._given_up, []
        for key in [k for k, p in self._open.items() if now - p.touched >= self._timeout]:
            given_up.append(self._give_up(key, Reason.SET_EXPIRED))
        for key in [k for k, (deadline, _) in self._done.items() if deadline <= now]:
            del self._done[key]
        return given_up

    def _remember_done(self, key: SplitKey, digests: frozenset[int], now: float) -> None:
        self._done[key] = (now + self._timeout, digests)
        while len(self._done) > self._max_open:
            del self._done[next(iter(self._done))]

    def _enforce_bounds(self, *, keep: SplitKey) -> None:
        while len(self._open) > self._max_open or (
            self._bytes > self._max_bytes and len(self._open) > 1
        ):
            oldest = next(iter(self._open))
            if oldest == keep:
                break
            self._given_up.append(self._give_up(oldest, Reason.SET_EVICTED))

    def _give_up(self, key: SplitKey, reason: Reason) -> SplitSet:
        pending = self._open.pop(key)
        self._bytes -= pending.size
        return SplitSet(
            key=key,
            pnum=pending.pnum,
            parts=tuple(pending.parts[n] for n in sorted(pending.parts)),
            complete=False,
            missing=tuple(n for n in range(1, pending.pnum + 1) if n not in pending.parts),
            reason=reason,
            duplicates=pending.duplicates,
            conflicts=pending.conflicts,
        )
