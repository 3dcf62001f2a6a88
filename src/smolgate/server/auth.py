"""Client and admin authentication, from the request's headers alone (before any body byte is read).

A client key is read where the matched route's protocol says its SDKs put it (its spec's `client_keys`:
`Authorization: Bearer` everywhere, `x-api-key` on Anthropic's routes, `x-goog-api-key` and `?key=` on
Gemini's); a header no SDK of that protocol sends is not read. With no keys configured the gateway is
open — and then `serve` binds to loopback only (see cli.py).

Admin routes (`/admin/*`) take a separate admin key (`server.admin_key` or `$SMOLGATE_ADMIN_KEY`), never a
client key. Without an admin key they answer only direct loopback clients (not through a proxy).
Failed attempts are throttled per client address (throttle.py).

A console session (console/sessions.py; docs/console.md) opens the admin routes in place of the admin key: its
cookie, plus `x-smolgate-csrf` on every request that changes state. Only requests carrying the cookie are
looked at for one, so client requests pay nothing for it.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping

from ..config import ClientKey, Config
from ..console.sessions import CSRF_HEADER, Revocations, Session, Signer, cookie_value
from ..errors import ErrorKind, GatewayError
from ..protocols.spec import KeyPresentation
from ..secret import Secret
from .asgi import HttpRequest
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


_READS = ("GET", "HEAD")
_SESSION_GONE = "the console session expired or is not valid; sign in again"


def direct_loopback(addr: str, headers: Mapping[str, str]) -> bool:
    """A client on this host talking to us directly (not through a proxy, which would name another client)."""
    return is_loopback(addr) and not any(h in headers for h in _PROXY_HEADERS)


class Authenticator:
    def __init__(self, cfg: Config, revocations: Revocations | None = None) -> None:
        self._keys = [(k.key.reveal().encode(), k) for k in cfg.keys]
        # how the ledger and logs name each config key: by its name, else a hash prefix (never the key)
        self._ids = {id(k): k.ledger_id for k in cfg.keys}
        admin = admin_key(cfg)
        self._admin = admin.reveal().encode() if admin else None
        s = cfg.server
        self.throttle = AuthThrottle(s.auth_failures, s.auth_backoff)
        # sessions signed under a key derived from this admin key: a new admin key ends them all
        self.signer = Signer(self._admin, cfg.console.session_ttl)
        self._sessions = cfg.console.enabled  # off: a cookie opens nothing (not even one issued before)
        self.revocations = revocations or Revocations(lambda: None)

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

    def admin_configured(self) -> bool:
        return self._admin is not None

    def sign_in(self, key: str, req: HttpRequest) -> bool:
        """Whether `key` is the admin credential (throttled like a failed admin key). Without an admin key,
        only a direct loopback client may sign in, with an empty key."""
        addr = req.client
        self._not_throttled(addr)
        if self._admin is None:
            ok = key == "" and direct_loopback(addr, req.headers)
        else:
            ok = hmac.compare_digest(key.encode(), self._admin)
        if ok:
            self.throttle.succeeded(addr)
        else:
            self.throttle.failed(addr)
        return ok

    async def session(self, headers: Mapping[str, str]) -> Session | None:
        """The live (signed, unexpired, not signed-out) console session the request's cookie carries."""
        token = cookie_value(headers) if self._sessions else None
        if token is None:
            return None
        s = self.signer.verify(token)
        if s is None or await self.revocations.revoked(s):
            return None
        return s

    async def console_caller(self, req: HttpRequest) -> bool:
        """A console session with its CSRF header: the playground, an admin caller on client routes. Without
        an admin key only a direct loopback client is one (as on the admin routes)."""
        h = req.headers
        if self._admin is None and not direct_loopback(req.client, h):
            return False
        s = await self.session(h)
        return s is not None and Signer.csrf_ok(s, h.get(CSRF_HEADER))

    async def admin(self, req: HttpRequest) -> None:
        """An admin route's caller: the admin key, or (with an admin key configured) a console session whose
        state-changing requests carry its CSRF token. 401 / 403 / 429 otherwise."""
        h = req.headers
        if (
            self._admin is None
            or not self._sessions
            or "cookie" not in h
            or presented_key(OWN_KEYS, h, {}) is not None
        ):
            self.check_admin(h, req.client)
            return
        self._not_throttled(req.client)
        s = await self.session(h)
        if s is None:
            self.throttle.failed(req.client)
            raise GatewayError(ErrorKind.AUTH, _SESSION_GONE if cookie_value(h) else "missing admin key")
        if req.method not in _READS and not Signer.csrf_ok(s, h.get(CSRF_HEADER)):
            raise GatewayError(
                ErrorKind.PERMISSION, f"missing or wrong {CSRF_HEADER} header for this session"
            )
        req.actor = "console"

    def check_admin(self, headers: Mapping[str, str], addr: str) -> None:
        if self._admin is None:
            if direct_loopback(addr, headers):
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
