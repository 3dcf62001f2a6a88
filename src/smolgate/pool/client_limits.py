"""Per-client-key limits (requests per minute, concurrent requests, tokens per minute), checked before any
upstream work.

A client over its limit gets a 429 at once (no queueing: the client is the one who should slow down), with
a message naming the limit and a Retry-After. With shared state the counters live in Redis, keyed by the
key's name (or a hash of it; a virtual key's id), never the key itself.

Tokens are known only when a request ends: each admitted request counts one token at once and the rest when
it ends (`add_tokens`), and a key is refused while its last minute holds `tpm` tokens or more — so a request
admitted just under the limit may take the window past it (by its own size).
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
    __slots__ = ("in_flight", "tokens", "win")

    def __init__(self) -> None:
        self.in_flight = 0
        self.win = Window()
        self.tokens = Window()


def _label(key: ClientKey) -> str:
    return key.name or "key-" + hashlib.sha256(key.key.reveal().encode()).hexdigest()[:12]


class ClientLimiter:
    def __init__(self, keys: list[ClientKey], state: object = None) -> None:
        # `state`: a SharedState, a Pools (its shared state is used), or None for in-process counters.
        shared = getattr(state, "shared", state)
        self.shared: SharedState | None = shared if isinstance(shared, SharedState) else None
        self._usage: dict[str, _Usage] = {_label(k): _Usage() for k in keys}

    async def acquire(self, key: ClientKey) -> Callable[[], Awaitable[None]]:
        return await self.acquire_for(_label(key), key.rpm, key.max_concurrency)

    async def acquire_for(
        self, label: str, rpm: int | None, max_concurrency: int | None, tpm: int | None = None
    ) -> Callable[[], Awaitable[None]]:
        """Admit one request of the key named `label` (429 if over a limit); returns its release."""
        u = self._usage.get(label) or self._usage.setdefault(label, _Usage())
        now = time.time()
        if max_concurrency is not None and u.in_flight >= max_concurrency:
            raise self._conc(label, max_concurrency)
        if rpm is not None and u.win.total(now) >= rpm:
            raise self._rpm(label, rpm, u.win.frees_at(now) - now)
        if tpm is not None and u.tokens.total(now) >= tpm:
            raise self._tpm(label, tpm, u.tokens.frees_at(now) - now)
        slot = None
        sh = self.shared
        if sh is not None and sh.up and (rpm is not None or max_concurrency is not None or tpm is not None):
            slot = sh.new_slot()
            res = await sh.claim(
                f"smolgate:client:{label}",
                now,
                slot,
                max_concurrency=max_concurrency,
                rpm=rpm,
                tpm=tpm,
                tokens=1 if tpm is not None else 0,  # refused when used + 1 > tpm: the window is full
            )
            if res is not None and not res[0]:
                if res[1] == "busy":
                    raise self._conc(label, max_concurrency or 0)
                if res[1] == "tpm":
                    raise self._tpm(label, tpm or 0, res[2] - now)
                raise self._rpm(label, rpm or 0, res[2] - now)
            if res is None:
                slot = None
        u.in_flight += 1
        u.win.add(now, 1)
        if tpm is not None:
            u.tokens.add(now, 1)
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

    def add_tokens(self, label: str, tokens: int) -> None:
        """A finished request's tokens (beyond the one counted when it was admitted). Must not block."""
        extra = tokens - 1
        if extra <= 0:
            return
        now = time.time()
        u = self._usage.get(label) or self._usage.setdefault(label, _Usage())
        u.tokens.add(now, extra)
        sh = self.shared
        if sh is not None and sh.up:
            sh.record(f"smolgate:client:{label}", "neutral", now, token_delta=extra)

    @staticmethod
    def _tpm(label: str, limit: int, wait: float) -> GatewayError:
        return GatewayError(
            ErrorKind.RATE_LIMITED,
            f"client key '{label}' is over its token rate limit ({limit} tokens per minute)",
            retry_after=round(max(wait, 1.0), 1),
        )

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
