"""Client and admin authentication, from the request's headers alone (before any body byte is read).

A client key is read where the matched route's protocol says its SDKs put it (its spec's `client_keys`:
`Authorization: Bearer` everywhere, `x-api-key` on Anthropic's routes, `x-goog-api-key` and `?key=` on
Gemini's); a header no SDK of that protocol sends is not read. With no keys configured the gateway is
open — and then `serve` binds to loopback only (see cli.py).

Admin routes (`/admin/*`) take a separate admin key (`server.admin_key` or `$SMOLGATE_ADMIN_KEY`), never a
client key. Without an admin key they answer only direct loopback clients (not through a proxy).
Failed attempts are throttled per client address (throttle.py).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping

from ..config import ClientKey, Config
from ..errors import ErrorKind, GatewayError
from ..protocols.spec import KeyPresentation
from ..secret import Secret
from .throttle import AuthThrottle

_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
# The gateway's own routes (health, admin) are called by operators' tools, not one SDK: any header style.
OWN_KEYS = KeyPresentation(headers=("x-api-key", "x-goog-api-key"))


def presented_key(keys: KeyPresentation, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key a request carries where `keys` says its clients put it; None without one."""
    if keys.bearer:
        auth = headers.get("authorization")
        if auth and auth[:7].lower() == "bearer ":
            return auth[7:].strip()
    for name in keys.headers:
        if found := headers.get(name):
            return found
    for name in keys.query:
        if found := query.get(name):
            return found
    return None


def admin_key(cfg: Config) -> Secret | None:
    """The admin credential: the config's, else the environment's, else none."""
    if cfg.server.admin_key:
        return cfg.server.admin_key
    env = os.environ.get("SMOLGATE_ADMIN_KEY")
    return Secret(env) if env else None


def is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


class Authenticator:
    def __init__(self, cfg: Config) -> None:
        self._keys = [(k.key.reveal().encode(), k) for k in cfg.keys]
        # how the ledger and logs name each config key: by its name, else a hash prefix (never the key)
        self._ids = {id(k): k.ledger_id for k in cfg.keys}
        admin = admin_key(cfg)
        self._admin = admin.reveal().encode() if admin else None
        s = cfg.server
        self.throttle = AuthThrottle(s.auth_failures, s.auth_backoff)

    @property
    def open(self) -> bool:
        return not self._keys

    def check(self, key: str | None, addr: str, required: bool = False) -> ClientKey | None:
        """The client of the key presented (`presented_key`), None on an open gateway (unless `required`:
        virtual keys exist); 401 (or 429 while throttled) otherwise."""
        if not self._keys and not required:
            return None
        self._not_throttled(addr)
        client = self._client(key) if key else None
        if client is None:
            self.throttle.failed(addr)
            raise GatewayError(ErrorKind.AUTH, "missing API key" if not key else "invalid API key")
        self.throttle.succeeded(addr)
        return client

    def key_id(self, client: ClientKey | None) -> str | None:
        """The id of a config-file key this authenticator returned (computed once, not per request)."""
        return self._ids[id(client)] if client is not None else None

    def check_admin(self, headers: Mapping[str, str], addr: str) -> None:
        if self._admin is None:
            if is_loopback(addr) and not any(h in headers for h in _PROXY_HEADERS):
                return
            raise GatewayError(
                ErrorKind.PERMISSION,
                "admin routes need an admin key (server.admin_key or "
                "SMOLGATE_ADMIN_KEY); without one they answer only loopback",
            )
        self._not_throttled(addr)
        key = presented_key(OWN_KEYS, headers, {})
        if key and hmac.compare_digest(key.encode(), self._admin):
            self.throttle.succeeded(addr)
            return
        if key and self._client(key) is not None:
            raise GatewayError(
                ErrorKind.PERMISSION, "a client key does not open admin routes; use the admin key"
            )
        self.throttle.failed(addr)
        raise GatewayError(ErrorKind.AUTH, "missing admin key" if not key else "invalid admin key")

    def config_client(self, key: str) -> ClientKey | None:
        """The config-file key `key` is, if any (constant time per configured key)."""
        return self._client(key) if self._keys else None

    def not_throttled(self, addr: str) -> None:
        """429 while `addr` must wait after failed attempts."""
        self._not_throttled(addr)

    def _client(self, key: str) -> ClientKey | None:
        raw = key.encode()
        found = None
        for expected, client in self._keys:  # constant-time per key, every key compared: no timing oracle
            if hmac.compare_digest(raw, expected) and found is None:
                found = client
        return found

    def _not_throttled(self, addr: str) -> None:
        wait = self.throttle.wait(addr)
        if wait is not None:
            raise GatewayError(
                ErrorKind.RATE_LIMITED,
                "too many failed authentications from this address; retry later",
                retry_after=wait,
            )
