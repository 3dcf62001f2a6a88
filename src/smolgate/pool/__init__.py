"""The accounts pool: many accounts per provider, spread, limited, and healed. See accounts.py."""

from .accounts import AccountPool, Lease, PoolOptions
from .client_limits import ClientLimiter
from .pools import AccountStatus, Pools

__all__ = ["AccountPool", "AccountStatus", "ClientLimiter", "Lease", "PoolOptions", "Pools"]
