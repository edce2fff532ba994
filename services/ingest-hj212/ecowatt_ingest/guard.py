"""PW failures per peer address: counted, and a peer that fails too often is blocked.

A wrong PW costs the server one scrypt (tens of milliseconds of a worker thread) and tells
the sender whether its guess was right. So every `bad_password` verdict is counted against
the peer's address (IP, without the port: a new connection does not start afresh);
`pw_failures_max` failures within `pw_failure_window_s` block the address for `pw_block_s`.
While blocked, a frame from it passes only when its identity is already known to be right
(a verdict cached from an earlier check), so a real device behind the same NAT that this
instance has seen keeps working; anything that would need a check is refused unchecked.

Addresses in `shared_networks` (`pw_failures_per_mn_from`: NAT gateways and TCP load
balancers in front of many devices, and loopback, where `make run`'s simulator connects)
are counted per (address, MN) instead: one misconfigured device behind them is blocked
without locking out its neighbours, and guessing is still limited per device.

Memory is bounded: at most `max_peers` keys are tracked (the oldest forgotten first), and
`sweep` drops what has expired.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

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
        shared_networks: Iterable[str] = (),
        max_peers: int = 100_000,
    ) -> None:
        self.shared = [ipaddress.ip_network(n, strict=False) for n in shared_networks]
        self._shared_cache: dict[str, bool] = {}
        self.max_failures = max(1, max_failures)
        self.window_s = window_s
        self.block_s = block_s
        self.now = now
        self.max_peers = max_peers
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._blocked: OrderedDict[str, float] = OrderedDict()

    def key(self, address: str, mn: str) -> str:
        """What a failure of `mn` from `address` counts against."""
        if not self.shared:
            return address
        shared = self._shared_cache.get(address)
        if shared is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                shared = False
            else:
                shared = any(ip in network for network in self.shared)
            if len(self._shared_cache) >= self.max_peers:
                self._shared_cache.clear()
            self._shared_cache[address] = shared
        return f"{address}|{mn}" if shared else address

    def blocked(self, address: str) -> bool:
        """True while `address` (a `key`) is blocked (a dict lookup; nothing when none is)."""
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
