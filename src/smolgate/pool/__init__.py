"""The accounts pool: many accounts per provider, load spread across them, failures absorbed.

    pools = await Pools.create(cfg.providers, cfg.state)          # state: None | "redis://…"
    lease = await pools.get("openai").acquire(tokens=n, exclude=tried, deadline=monotonic_deadline)
    try:
        … call the upstream with lease.account.api_key …
        lease.record(status=resp.status, headers=resp.headers)    # or record(error=ErrorKind.TIMEOUT)
    finally:
        await lease.release()

`acquire` picks by the provider's strategy among enabled, healthy, non-excluded accounts under their limits;
waits in a bounded FIFO queue when all are at their caps; raises GatewayError(RATE_LIMITED, retry_after) when
the wait times out or nothing is usable at all. Modules:

  accounts.py          AccountPool (pick, wait, release) and Lease
  changes.py           accounts added, removed, enabled, disabled at run time
  outcomes.py          what a status / error / headers does to an account
  health.py            cooldown, circuit breaker, disabled — the state machine
  strategies.py        round_robin, weighted (smooth WRR), least_in_flight, rate_limit_aware
  ratelimit_headers.py x-ratelimit-*, anthropic-ratelimit-*, retry-after(-ms)
  state_memory.py      per-account in-process state, sliding rate windows
  state_redis.py       shared state across replicas (Lua), degrade/recover when Redis goes away
  client_limits.py     per-client-key rpm / concurrency
  pools.py             Pools and the AccountStatus snapshot
"""

from .accounts import AccountPool, Lease, PoolOptions
from .client_limits import ClientLimiter
from .pools import AccountStatus, Pools

__all__ = ["AccountPool", "AccountStatus", "ClientLimiter", "Lease", "PoolOptions", "Pools"]
