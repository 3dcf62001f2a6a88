"""`/ui/api/session`: sign in (the admin credential → the session cookie and its CSRF token), the current
session, sign out (revoked everywhere). Each sign-in, failed sign-in and sign-out is audited (actor "console");
the audit rows name the session by a hash, never its token."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import msgspec

from ..errors import ErrorKind, GatewayError, invalid
from ..server.admin.common import json_body, source
from ..server.asgi import HttpRequest, Receive, Send, send_body, send_empty
from .assets import enabled
from .sessions import COOKIE, CSRF_HEADER, Session, Signer

if TYPE_CHECKING:
    from ..server.auth import Authenticator
    from ..server.runtime import Runtime

_NO_STORE = {"cache-control": "no-store"}


class SessionAnswer(msgspec.Struct, kw_only=True):
    csrf: str
    expires: int  # Unix seconds


async def _answer(send: Send, s: Session, headers: dict[str, str]) -> None:
    body = msgspec.json.encode(SessionAnswer(csrf=s.csrf, expires=s.expires))
    await send_body(send, 200, body, "application/json", {**_NO_STORE, **headers})


def _auth(rt: Runtime) -> Authenticator:
    enabled(rt)
    auth = rt.console.auth
    if auth is None:  # the runtime is served by no Gateway (never in `serve`)
        raise GatewayError(ErrorKind.INTERNAL, "console sessions are not set up")
    return auth


def _cookie(value: str, max_age: int, tls: bool) -> str:
    secure = "; Secure" if tls else ""
    return f"{COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{secure}"


def _tag(s: Session) -> str:
    return hashlib.sha256(s.sid.encode()).hexdigest()[:12]


def _tls(req: HttpRequest) -> bool:
    return req.tls or req.headers.get("x-forwarded-proto", "").lower() == "https"


async def sign_in(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    auth = _auth(rt)
    key = json_body(req).get("admin_key", "")
    if not isinstance(key, str):
        raise invalid("admin_key must be a string", param="admin_key")
    if not auth.sign_in(key, req):
        await rt.audit("console.signin", None, source(req), "console", ok=False)
        if not auth.admin_configured():
            raise GatewayError(
                ErrorKind.PERMISSION,
                "no admin key is configured: only a loopback client may sign in (set server.admin_key "
                "or SMOLGATE_ADMIN_KEY to sign in from elsewhere)",
            )
        raise GatewayError(ErrorKind.AUTH, "invalid admin key")
    token, s = auth.signer.issue()
    await rt.audit("console.signin", None, source(req), "console", ok=True, session=_tag(s))
    await _answer(send, s, {"set-cookie": _cookie(token, int(auth.signer.ttl), _tls(req))})


async def current(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    s = await _auth(rt).session(req.headers)
    if s is None:
        raise GatewayError(ErrorKind.AUTH, "not signed in")
    await _answer(send, s, {})


async def sign_out(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    auth = _auth(rt)
    s = await auth.session(req.headers)
    if s is None:
        raise GatewayError(ErrorKind.AUTH, "not signed in")
    if not Signer.csrf_ok(s, req.headers.get(CSRF_HEADER)):
        raise GatewayError(ErrorKind.PERMISSION, f"missing or wrong {CSRF_HEADER} header for this session")
    await rt.console.revocations.revoke(s)
    await rt.audit("console.signout", None, source(req), "console", session=_tag(s))
    await send_empty(send, 204, {**_NO_STORE, "set-cookie": _cookie("", 0, _tls(req))})
