"""PW failures per peer address: counted, and a peer that fails too often is blocked.

A wrong PW costs the server one scrypt (tens of milliseconds of a worker thread) and tells
the sender whether its guess was right. So every `bad_password` verdict is counted against
the peer's address (IP, without the port: a new connection does not start afresh);
`pw_failures_max` failures within `pw_failure_window_s` block the address for `pw_block_s`.
While blocked, a frame from it passes only when its identity is already known to be right
(a verdict cached from an earlier check), so a real device behind the same NAT that this
instance has seen keeps working; anything that would need a check is refused unchecked.

Memory is bounded: at most `max_peers` addresses are tracked (the oldest forgotten first),
and `sweep` drops what has expired.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["PeerGuard"]


class PeerGuard:
    """See the module docstring."""

    def __init__(
        self,
        *,
        max_failures: int,
        window_s: float,
        block_s: float,
        now: Callable[[], float],
        max_peers: int = 100_000,
    ) -> None:
        self.max_failures = max(1, max_failures)
        self.window_s = window_s
        self.block_s = block_s
        self.now = now
        self.max_peers = max_peers
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._blocked: OrderedDict[str, float] = OrderedDict()

    def blocked(self, address: str) -> bool:
        """True while `address` is blocked (a dict lookup; nothing when none is)."""
        if not self._blocked:
            return False
        until = self._blocked.get(address)
        if until is None:
            return False
        if until > self.now():
            return True
        del self._blocked[address]
        return False

    def blocked_until(self, address: str) -> float | None:
        until = self._blocked.get(address)
        return until if until is not None and until > self.now() else None

    def failure(self, address: str) -> bool:
        """Count a PW failure of `address`; True when this one blocks it."""
        now = self.now()
        times = self._failures.get(address)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.max_failures)
            while len(self._failures) > self.max_peers:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(address)
        times.append(now)
        if len(times) < self.max_failures or now - times[0] > self.window_s:
            return False
        del self._failures[address]
        self._blocked[address] = now + self.block_s
        self._blocked.move_to_end(address)
        while len(self._blocked) > self.max_peers:
            self._blocked.popitem(last=False)
        return True

    @property
    def blocked_count(self) -> int:
        return len(self._blocked)

    def sweep(self) -> None:
        """Forget failures older than the window and blocks that have ended."""
        now = self.now()
        for address in [a for a, t in self._failures.items() if now - t[-1] > self.window_s]:
            del self._failures[address]
        for address in [a for a, until in self._blocked.items() if until <= now]:
            del self._blocked[address]
