"""Per-client-key limits (requests per minute, concurrent requests), checked before any upstream work.

A client over its limit gets a 429 at once (no queueing: the client is the one who should slow down), with
a message naming the limit and a Retry-After. With shared state the counters live in Redis, keyed by the
key's name (or a hash of it), never the key itself.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable

from ..config import ClientKey
from ..errors import ErrorKind, GatewayError
from .state_memory import Window
from .state_redis import SharedState


class _Usage:
    __slots__ = ("in_flight", "win")

    def __init__(self) -> None:
        self.in_flight = 0
        self.win = Window()


def _label(key: ClientKey) -> str:
    return key.name or "key-" + hashlib.sha256(key.key.reveal().encode()).hexdigest()[:12]


class ClientLimiter:
    def __init__(self, keys: list[ClientKey], state: object = None) -> None:
        # `state`: a SharedState, a Pools (its shared state is used), or None for in-process counters.
        shared = getattr(state, "shared", state)
        self.shared: SharedState | None = shared if isinstance(shared, SharedState) else None
        self._usage: dict[str, _Usage] = {_label(k): _Usage() for k in keys}

    async def acquire(self, key: ClientKey) -> Callable[[], Awaitable[None]]:
        label = _label(key)
        u = self._usage.get(label) or self._usage.setdefault(label, _Usage())
        now = time.time()
        if key.max_concurrency is not None and u.in_flight >= key.max_concurrency:
            raise self._conc(label, key.max_concurrency)
        if key.rpm is not None and u.win.total(now) >= key.rpm:
            raise self._rpm(label, key.rpm, u.win.frees_at(now) - now)
        slot = None
        sh = self.shared
        if sh is not None and sh.up and (key.rpm is not None or key.max_concurrency is not None):
            slot = sh.new_slot()
            res = await sh.claim(
                f"smolgate:client:{label}", now, slot, max_concurrency=key.max_concurrency, rpm=key.rpm
            )
            if res is not None and not res[0]:
                if res[1] == "busy":
                    raise self._conc(label, key.max_concurrency or 0)
                raise self._rpm(label, key.rpm or 0, res[2] - now)
            if res is None:
                slot = None
        u.in_flight += 1
        u.win.add(now, 1)
        done = False

        async def release() -> None:
            nonlocal done
            if done:
                return
            done = True
            u.in_flight -= 1
            if slot is not None and sh is not None:
                await sh.release(slot)

        return release

    @staticmethod
    def _conc(label: str, limit: int) -> GatewayError:
        return GatewayError(
            ErrorKind.RATE_LIMITED,
            f"client key '{label}' is over its concurrency limit ({limit} requests at once)",
            retry_after=1.0,
        )

    @staticmethod
    def _rpm(label: str, limit: int, wait: float) -> GatewayError:
        return GatewayError(
            ErrorKind.RATE_LIMITED,
            f"client key '{label}' is over its rate limit ({limit} requests per minute)",
            retry_after=round(max(wait, 1.0), 1),
        )
