"""Shared pool state in Redis, so replicas enforce one combined limit and see each other's cooldowns.

The in-process state stays the pool's working view; Redis is consulted as the arbiter on each acquire (one
Lua call that checks health, concurrency, rate windows and the announced budget, then takes the slot — so
two replicas can never both take the last slot) and told about each outcome (one Lua call applying the same
health transitions as health.py). Keys: `smolgate:pool:<provider>:<account>:{health,slots,rl,rq:<b>,tk:<b>}`
and `smolgate:client:<name>:…` for client limits.

In-flight slots are members of a sorted set scored by their expiry; a heartbeat renews the slots this
replica holds, so a crashed replica's slots vanish after `slot_ttl` instead of leaking capacity forever.

If Redis goes away: one warning, every call returns None (callers keep their local decision), a probe task
pings until it is back, then slots still held are re-registered and sharing resumes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis import exceptions as rexc
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.typing import EncodableT

from .state_memory import BUCKET, NBUCKETS

_OnResult = Callable[[tuple[str, float, str]], None]  # an outcome's shared (state, until, reason)

log = logging.getLogger("smolgate.pool")

_WINDOW = """
local function window(p, kind, b, nb)
  local keys = {}
  for i = 0, nb - 1 do keys[#keys + 1] = p .. ':' .. kind .. ':' .. (b - i) end
  local vals = redis.call('MGET', unpack(keys))
  local sum, oldest = 0, b
  for i = 1, nb do
    if vals[i] then sum = sum + tonumber(vals[i]); oldest = b - i + 1 end
  end
  return sum, oldest
end
"""

CLAIM = (
    _WINDOW
    + """
local p = KEYS[1]
local now, slot, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local maxc, rpm, tpm, tokens = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local probe_ttl, fp, bsize, nb = tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11])
local hk = p .. ':health'
local h = redis.call('HMGET', hk, 'state', 'until', 'reason', 'probe_until', 'fp')
local state, untl, reason = h[1] or 'healthy', tonumber(h[2] or '0') or 0, h[3] or ''
local probe = 0
if state == 'disabled' then
  if h[5] == fp then return {0, 'disabled', '0', reason} end
  redis.call('DEL', hk)  -- disabled for a key that has since been replaced
elseif state == 'cooling' then
  if untl > now then return {0, 'cooling', tostring(untl), reason} end
elseif state == 'open' then
  if untl > now then return {0, 'open', tostring(untl), reason} end
  probe = 1
elseif state == 'half_open' then
  local pu = tonumber(h[4] or '0') or 0
  if pu > now then return {0, 'half_open', tostring(pu), reason} end
  probe = 1  -- the previous probe's holder vanished without reporting
end
local sk = p .. ':slots'
redis.call('ZREMRANGEBYSCORE', sk, '-inf', now)
if maxc > 0 and redis.call('ZCARD', sk) >= maxc then return {0, 'busy', '0', ''} end
local b = math.floor(now / bsize)
if rpm > 0 then
  local used, oldest = window(p, 'rq', b, nb)
  if used >= rpm then return {0, 'rpm', tostring((oldest + nb) * bsize), ''} end
end
if tpm > 0 then
  local used, oldest = window(p, 'tk', b, nb)
  if used > 0 and used + tokens > tpm then return {0, 'tpm', tostring((oldest + nb) * bsize), ''} end
end
local rk = p .. ':rl'
local rl = redis.call('HMGET', rk, 'rem_req', 'reset_req', 'rem_tok', 'reset_tok')
if rl[1] and tonumber(rl[1]) <= 0 and (tonumber(rl[2] or '0') or 0) > now then
  return {0, 'exhausted', rl[2], ''} end
if rl[3] and tonumber(rl[3]) <= 0 and (tonumber(rl[4] or '0') or 0) > now then
  return {0, 'exhausted', rl[4], ''} end
redis.call('ZADD', sk, now + ttl, slot)
redis.call('EXPIRE', sk, math.ceil(ttl) * 2 + 60)
local ex = math.ceil(bsize * (nb + 1))
if rpm > 0 then local k = p .. ':rq:' .. b; redis.call('INCR', k); redis.call('EXPIRE', k, ex) end
if tpm > 0 and tokens > 0 then
  local k = p .. ':tk:' .. b; redis.call('INCRBY', k, tokens); redis.call('EXPIRE', k, ex) end
if rl[1] then redis.call('HINCRBY', rk, 'rem_req', -1) end
if rl[3] and tokens > 0 then redis.call('HINCRBY', rk, 'rem_tok', -tokens) end
if probe == 1 then
  redis.call('HSET', hk, 'state', 'half_open', 'probe_until', tostring(now + probe_ttl))
  redis.call('EXPIRE', hk, 86400)
  return {1, 'probe', '0', ''}
end
return {1, 'ok', '0', ''}
"""
)

RECORD = """
local p = KEYS[1]
local kind, now, untl, cooldown = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local threshold, reason, fp = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local hk = p .. ':health'
local h = redis.call('HMGET', hk, 'state', 'until', 'failures')
local state = h[1] or 'healthy'
if kind == 'ok' or kind == 'neutral' then
  if state == 'open' or state == 'half_open' then
    redis.call('HSET', hk, 'state', 'healthy', 'until', '0', 'reason', '', 'failures', '0')
  elseif h[3] and h[3] ~= '0' then
    redis.call('HSET', hk, 'failures', '0')
  end
elseif kind == 'rate_limited' and state ~= 'disabled' then
  local cur = tonumber(h[2] or '0') or 0
  if state == 'cooling' and cur > untl then untl = cur end
  redis.call('HSET', hk, 'state', 'cooling', 'until', tostring(untl), 'reason', reason)
elseif kind == 'failure' and state ~= 'disabled' then
  local f = redis.call('HINCRBY', hk, 'failures', 1)
  if state == 'half_open' or f >= threshold then
    redis.call('HSET', hk, 'state', 'open', 'until', tostring(now + cooldown), 'reason', reason)
  end
elseif kind == 'auth' then
  redis.call('HSET', hk, 'state', 'disabled', 'until', '0', 'reason', reason, 'fp', fp)
end
redis.call('EXPIRE', hk, 86400)
local rk = p .. ':rl'
if ARGV[8] ~= '' then redis.call('HSET', rk, 'rem_req', ARGV[8], 'reset_req', ARGV[9]) end
if ARGV[10] ~= '' then redis.call('HSET', rk, 'rem_tok', ARGV[10], 'reset_tok', ARGV[11]) end
if ARGV[8] ~= '' or ARGV[10] ~= '' then redis.call('EXPIRE', rk, 3600) end
local dt = tonumber(ARGV[12])
if dt ~= 0 then  -- correct the token window from the estimate to the actual usage
  local k = p .. ':tk:' .. math.floor(now / tonumber(ARGV[13]))
  redis.call('INCRBY', k, dt); redis.call('EXPIRE', k, math.ceil(tonumber(ARGV[13]) * (tonumber(ARGV[14]) + 1)))
end
local r = redis.call('HMGET', hk, 'state', 'until', 'reason')
return {r[1] or 'healthy', r[2] or '0', r[3] or ''}
"""

_DOWN = (rexc.ConnectionError, rexc.TimeoutError, OSError, asyncio.TimeoutError)


def _redact(url: str) -> str:
    u = urlsplit(url)
    host = u.hostname or ""
    return urlunsplit((u.scheme, f"{host}:{u.port}" if u.port else host, u.path, "", ""))


class SharedState:
    def __init__(
        self, url: str, *, timeout: float = 0.5, probe_interval: float = 1.0, slot_ttl: float = 30.0
    ) -> None:
        self.url = _redact(url)
        self.slot_ttl = slot_ttl
        self.probe_interval = probe_interval
        self.up = True
        # A bounded pool that makes callers queue for a connection (instead of failing) under bursts, and
        # no redis-py retries: a dead server must be noticed at once, not after seconds of backoff.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=32,
            timeout=5.0,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._r = Redis(connection_pool=pool)
        self._claim = self._r.register_script(CLAIM)
        self._record = self._r.register_script(RECORD)
        self._held: dict[str, str] = {}  # slot id → its sorted set, renewed by the heartbeat
        self._ids = itertools.count()
        self._replica = os.urandom(6).hex()
        self._tasks: set[asyncio.Task[None]] = set()
        self._probe_task: asyncio.Task[None] | None = None
        # Ordered writes (outcomes; slot releases nobody waits for), sent pipelined by one writer task.
        # Bounded: under a Redis stall the oldest queued writes are dropped, never memory.
        self._outbox: collections.deque[tuple[list[str] | None, list[EncodableT], _OnResult | None]] = (
            collections.deque(maxlen=10_000)
        )
        self._wake = asyncio.Event()
        self._busy = False
        # Writes queued and writes done with (sent, dropped or lost): `drain` waits for a count, not for an
        # empty outbox, which under steady traffic may never come.
        self._queued = 0
        self._settled = 0

    async def start(self) -> SharedState:
        try:
            await self._r.ping()
        except _DOWN as exc:
            self._down(exc)
        self.spawn(self._heartbeat())
        self.spawn(self._writer())
        return self

    def new_slot(self) -> str:
        return f"{self._replica}:{next(self._ids)}"

    async def claim(
        self,
        prefix: str,
        now: float,
        slot: str,
        *,
        max_concurrency: int | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        tokens: int = 0,
        fp: str = "",
    ) -> tuple[bool, str, float, str] | None:
        """Atomically check and take one slot. None when Redis is unreachable (decide locally)."""
        res = await self._call(
            self._claim,
            [prefix],
            [
                now,
                slot,
                self.slot_ttl,
                max_concurrency or 0,
                rpm or 0,
                tpm or 0,
                tokens,
                self.slot_ttl,
                fp,
                BUCKET,
                NBUCKETS,
            ],
        )
        if res is None:
            return None
        ok, code, until, reason = res
        if ok:
            self._held[slot] = prefix + ":slots"
        return bool(ok), code, float(until), reason

    async def release(self, slot: str, *, wait: bool = True) -> None:
        """Free a slot. `wait=False` queues the removal behind the outcome writer instead of paying a round
        trip now (nobody here is waiting for the slot; other replicas see it a moment later)."""
        key = self._held.pop(slot, None)
        if key is None:
            return
        if wait:
            await self._call(self._r.zrem, key, slot)
        elif self.up:
            self._enqueue((None, [key, slot], None))

    async def read(self, prefixes: list[str], now: float) -> list[tuple[str, float, str, str, int]] | None:
        """Each account's shared (state, until, reason, key fingerprint, in-flight across replicas)."""
        if not self.up:
            return None
        pipe = self._r.pipeline(transaction=False)
        for p in prefixes:
            pipe.hmget(p + ":health", "state", "until", "reason", "fp")
            pipe.zcount(p + ":slots", now, "+inf")
        try:
            res = await pipe.execute()
        except _DOWN as exc:
            self._down(exc)
            return None
        return [
            (h[0] or "healthy", float(h[1] or 0), h[2] or "", h[3] or "", int(n))
            for h, n in zip(res[::2], res[1::2], strict=True)
        ]

    async def forget(self, prefix: str) -> None:
        """Drop an account's shared health (an operator re-enabled it): every replica sees it healthy."""
        await self._call(self._r.delete, prefix + ":health")

    async def get_float(self, key: str) -> tuple[bool, float | None]:
        """(Redis reachable, the counter's value or None when it does not exist)."""
        got = await self._call(self._r.get, key)
        return self.up, float(got) if got is not None else None

    async def seed_float(self, key: str, value: float, ttl: int | None) -> None:
        """Create a counter at `value` unless it exists (another replica may have seeded it first)."""
        await self._call(self._r.set, key, repr(value), ttl, None, True)  # set(name, value, ex, px, nx)

    async def add_float(self, key: str, amount: float, ttl: int | None) -> None:
        """INCRBYFLOAT, refreshing the counter's expiry (budget spend per key and period)."""
        pipe = self._r.pipeline(transaction=True)
        pipe.incrbyfloat(key, amount)
        if ttl:
            pipe.expire(key, ttl)
        await self._call(pipe.execute)

    def record(
        self,
        prefix: str,
        kind: str,
        now: float,
        *,
        until: float = 0.0,
        cooldown: float = 0.0,
        threshold: int = 1,
        reason: str = "",
        fp: str = "",
        rem_req: int | None = None,
        reset_req: float | None = None,
        rem_tok: int | None = None,
        reset_tok: float | None = None,
        token_delta: int = 0,
        on_result: _OnResult | None = None,
    ) -> None:
        """Queue an outcome. One writer sends queued outcomes in order, pipelined: the breaker's
        "consecutive failures" must see a 503 and the success after it in the order they happened."""

        def s(v: object) -> str:
            return "" if v is None else str(v)

        self._enqueue(
            (
                [prefix],
                [
                    kind,
                    now,
                    until,
                    cooldown,
                    threshold,
                    reason,
                    fp,
                    s(rem_req),
                    s(reset_req or 0),
                    s(rem_tok),
                    s(reset_tok or 0),
                    token_delta,
                    BUCKET,
                    NBUCKETS,
                ],
                on_result,
            )
        )

    def _enqueue(self, item: tuple[list[str] | None, list[EncodableT], _OnResult | None]) -> None:
        if len(self._outbox) == self._outbox.maxlen:
            self._settled += 1  # the oldest falls out (bounded under a Redis stall)
        self._outbox.append(item)
        self._queued += 1
        self._wake.set()

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._busy = True
            while self._outbox and self.up:
                batch = [self._outbox.popleft() for _ in range(min(256, len(self._outbox)))]
                pipe = self._r.pipeline(transaction=False)
                for keys, args, _ in batch:
                    if keys is None:  # a queued slot release: [its sorted set, the slot id]
                        pipe.zrem(str(args[0]), str(args[1]))
                    else:
                        await self._record(keys=keys, args=args, client=pipe)  # queues into the pipeline
                try:
                    results = await pipe.execute()
                except _DOWN as exc:
                    self._settled += len(batch)
                    self._down(exc)
                    break
                for (_, _, cb), res in zip(batch, results, strict=True):
                    if cb is not None:
                        cb((res[0], float(res[1]), res[2]))
                self._settled += len(batch)
            if not self.up:
                self._settled += len(self._outbox)
                self._outbox.clear()  # stale by the time Redis returns; local state already has them
            self._busy = False

    async def _call(self, fn: Any, *args: Any) -> Any:
        if not self.up:
            return None
        try:
            if hasattr(fn, "registered_client"):  # a Lua script: (keys, args)
                return await fn(keys=args[0], args=args[1])
            return await fn(*args)
        except _DOWN as exc:
            self._down(exc)
            return None

    def _down(self, exc: BaseException) -> None:
        if not self.up and self._probe_task is not None:
            return
        self.up = False
        log.warning(
            "shared pool state at %s is unreachable (%s); using per-process state until it returns",
            self.url,
            type(exc).__name__,
        )
        self._probe_task = self.spawn(self._probe())

    async def _probe(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            try:
                await self._r.ping()
                # Slots taken while Redis was away (or lost with a restarted server) count again from now on.
                if self._held:
                    pipe = self._r.pipeline(transaction=False)
                    exp = time.time() + self.slot_ttl
                    for slot, key in list(self._held.items()):
                        pipe.zadd(key, {slot: exp})
                    await pipe.execute()
            except _DOWN:
                continue
            self.up = True
            self._probe_task = None
            log.warning("shared pool state at %s is reachable again; sharing resumed", self.url)
            return

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.slot_ttl / 3)
            if not self.up or not self._held:
                continue
            pipe = self._r.pipeline(transaction=False)
            exp = time.time() + self.slot_ttl
            for slot, key in list(self._held.items()):
                pipe.zadd(key, {slot: exp}, xx=True)
            with contextlib.suppress(*_DOWN):
                await pipe.execute()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `coro` in the background, held until done (and cancelled by close())."""
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    async def drain(self) -> None:
        """Wait until the writes queued before this call have landed (at most 2 s): a barrier, so that a
        reader sees its own replica's outcomes first, however busy the outbox stays meanwhile."""
        target, end = self._queued, time.monotonic() + 2.0
        while self._settled < target and self.up and time.monotonic() < end:
            await asyncio.sleep(0.002)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._r.aclose()
        await self._r.connection_pool.disconnect()
