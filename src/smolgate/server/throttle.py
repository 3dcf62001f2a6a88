"""Back-off for client addresses that keep failing authentication (key guessing, a misconfigured client).

After `failures` failed attempts within `window` seconds, an address is made to wait: 1 s, then doubling with
each further failure, up to `max_backoff`. While it waits its requests get a 429 with Retry-After before any
key is compared. A success forgets the address. Memory is bounded: at most `capacity` addresses are tracked
(least recently failing forgotten first), and IPv6 clients are grouped by /64, the block one host usually
gets, so an attacker cannot get a fresh address per guess.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _State:
    failures: int
    first: float  # time of the first failure in the current window
    until: float = 0.0  # blocked until (monotonic)


def client_bucket(addr: str) -> str:
    """The unit an address is throttled as: the address itself, or its /64 for IPv6."""
    if ":" not in addr:
        return addr
    try:
        net = ipaddress.IPv6Network((addr.split("%", 1)[0], 64), strict=False)
    except ValueError:
        return addr
    mapped = ipaddress.IPv6Address(addr.split("%", 1)[0]).ipv4_mapped
    return str(mapped) if mapped is not None else str(net)


class AuthThrottle:
    def __init__(
        self, failures: int, max_backoff: float, window: float = 300.0, capacity: int = 10_000
    ) -> None:
        self.failures = max(1, failures)
        self.max_backoff = max_backoff
        self.window = window
        self.capacity = capacity
        self._seen: OrderedDict[str, _State] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def wait(self, addr: str) -> float | None:
        """Seconds this address must still wait, or None if it may try a key now."""
        if not self._seen:
            return None
        st = self._seen.get(client_bucket(addr))
        if st is None:
            return None
        left = st.until - time.monotonic()
        return left if left > 0 else None

    def failed(self, addr: str) -> None:
        key = client_bucket(addr)
        now = time.monotonic()
        st = self._seen.pop(key, None)
        if st is None or (now - st.first > self.window and now >= st.until):
            st = _State(0, now)
        st.failures += 1
        over = st.failures - self.failures
        if over >= 0:
            st.until = now + min(self.max_backoff, 2.0 ** min(over, 30))
        self._seen[key] = st  # most recent last
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def succeeded(self, addr: str) -> None:
        if self._seen:
            self._seen.pop(client_bucket(addr), None)
