"""Console sessions: a signed, expiring token in an HttpOnly cookie, its CSRF token, and sign-out revocation.

The token is `v1.<session id>.<expiry>.<HMAC-SHA256>`; nothing is stored per session. The HMAC key is derived
from the admin key, so a new admin key (a config reload) ends every session at once. Without an admin key
(loopback-only admin) the key is random per process: sessions end with the process. The CSRF token is another
HMAC of the session id: the page reads it from the sign-in answer and sends it as `x-smolgate-csrf`; a page on
another origin can make the browser send the cookie but can never read the token.

Sign-out revokes the session id until its expiry: in this process, and with shared state (Redis) in the shared
store too, so every replica honours it. Only requests that carry the cookie pay for the lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..pool.state_redis import SharedState

COOKIE = "smolgate_session"
CSRF_HEADER = "x-smolgate-csrf"
CONSOLE_KEY_ID = "console"  # the ledger's key id of the playground's requests
_LOCAL_SECRET = os.urandom(32)  # signs sessions when no admin key is configured (loopback-only admin)
_CONTEXT = b"smolgate console session v1"
_MAX_TOKEN = 200  # a cookie longer than this is not ours: not parsed further


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    expires: int  # Unix seconds
    csrf: str


def cookie_value(headers: Mapping[str, str]) -> str | None:
    """Our cookie's value from the `Cookie` header, if present. Split by hand: `http.cookies` gives up on the
    whole header at the first cookie it finds malformed, and a browser sends every other localhost app's too."""
    raw = headers.get("cookie")
    if not raw or COOKIE not in raw:
        return None
    for part in raw.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == COOKIE:
            return value.strip().strip('"')
    return None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Signer:
    """Makes and checks tokens under one key (one admin key's worth of sessions)."""

    def __init__(self, admin_key: bytes | None, ttl: float) -> None:
        self._key = hmac.new(admin_key or _LOCAL_SECRET, _CONTEXT, hashlib.sha256).digest()
        self.ttl = ttl

    def _mac(self, msg: str) -> str:  # base64url of HMAC-SHA256
        return _b64(hmac.new(self._key, msg.encode(), hashlib.sha256).digest())

    def _csrf(self, sid: str) -> str:
        return self._mac("csrf." + sid)

    def issue(self, now: float | None = None) -> tuple[str, Session]:
        sid = secrets.token_hex(16)
        expires = int((now or time.time()) + self.ttl)
        body = f"v1.{sid}.{expires}"
        return f"{body}.{self._mac(body)}", Session(sid, expires, self._csrf(sid))

    def verify(self, token: str, now: float | None = None) -> Session | None:
        """The session of a well-signed, unexpired token; None otherwise (tampered, expired, another key)."""
        if len(token) > _MAX_TOKEN:
            return None
        body, _, mac = token.rpartition(".")
        parts = body.split(".")
        if len(parts) != 3 or parts[0] != "v1" or not parts[2].isdigit():
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        expires = int(parts[2])
        if expires <= (now or time.time()):
            return None
        return Session(parts[1], expires, self._csrf(parts[1]))

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), session.csrf.encode())


class Revocations:
    """Signed-out session ids until their expiry: this process's (bounded), plus the shared store's when there
    is one. When Redis is unreachable, the local set still holds every sign-out this replica saw."""

    def __init__(self, shared: Callable[[], SharedState | None], capacity: int = 10_000) -> None:
        self._shared = shared
        self._local: OrderedDict[str, int] = OrderedDict()  # sid → expiry
        self._capacity = capacity

    @staticmethod
    def _key(sid: str) -> str:
        return "smolgate:console:revoked:" + sid

    async def revoke(self, s: Session) -> None:
        now = time.time()
        self._local[s.sid] = s.expires
        while len(self._local) > self._capacity or (
            self._local and next(iter(self._local.values())) <= now
        ):  # oldest first out: expired ones, or past the bound
            self._local.popitem(last=False)
        shared = self._shared()
        if shared is not None:
            await shared.seed_float(self._key(s.sid), 1.0, max(1, int(s.expires - now) + 1))

    async def revoked(self, s: Session) -> bool:
        if s.sid in self._local:
            return True
        shared = self._shared()
        if shared is None:
            return False
        _, value = await shared.get_float(self._key(s.sid))
        return value is not None
