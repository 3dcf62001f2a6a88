"""Shared helpers for the pool tests."""

from __future__ import annotations

from typing import Any

from smolgate.config import AccountConfig, BreakerConfig, ProviderConfig
from smolgate.pool import PoolOptions, Pools


def acct(name: str, **kw: Any) -> AccountConfig:
    return AccountConfig(name=name, api_key=f"sk-secret-{name}", **kw)


def prov(
    name: str,
    accounts: list[AccountConfig],
    *,
    strategy: str = "round_robin",
    failures: int = 3,
    cooldown: float = 10.0,
    queue_timeout: float = 10.0,
) -> ProviderConfig:
    return ProviderConfig(
        name=name,
        protocol="openai",
        base_url="http://127.0.0.1:1/v1",
        accounts=accounts,
        strategy=strategy,  # type: ignore[arg-type]
        breaker=BreakerConfig(failures=failures, cooldown=cooldown),
        queue_timeout=queue_timeout,
    )


async def make_pools(backend: str, providers: list[ProviderConfig], url: str | None, **opts: Any) -> Pools:
    opts.setdefault("backoff_base", 0.2)
    opts.setdefault("probe_interval", 0.1)
    return await Pools.create(providers, url if backend == "redis" else None, options=PoolOptions(**opts))


def status(pools: Pools, account: str):  # type: ignore[no-untyped-def]
    return next(s for s in pools.snapshot() if s.account == account)
