"""The console's static files: `GET /ui` (redirect), `GET /ui/` (index.html) and `GET /ui/assets/{file}`.

The files are package data (`static/`), read once at import into a fixed manifest: a request names a key of
that dict, never a path, so nothing a client sends reaches the file system. Each file has its content type,
a strong ETag (a hash of its bytes) for `If-None-Match`, and every answer under `/ui` carries the console's security
headers (docs/console.md: a strict CSP, nosniff, no referrer), added by the app to errors too.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from ..errors import not_found
from ..server.asgi import HttpRequest, Receive, Send, send_body, send_empty

if TYPE_CHECKING:
    from ..server.runtime import Runtime

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
_TYPES = {  # the platform's mimetypes table varies by OS; these must not
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _content_type(name: str) -> str:
    ext = name[name.rfind(".") :].lower() if "." in name else ""
    return _TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def load_manifest() -> dict[str, Asset]:
    """Every file directly in `static/` (hidden files skipped), by name."""
    out: dict[str, Asset] = {}
    root = resources.files(__package__).joinpath("static")
    if not root.is_dir():
        return out
    for entry in root.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            out[entry.name] = Asset(body, _content_type(entry.name), etag)
    return out


MANIFEST = load_manifest()


def enabled(rt: Runtime) -> None:
    if not rt.cfg.console.enabled:
        raise not_found("the console is turned off (console.enabled)")


async def _serve(asset: Asset, req: HttpRequest, send: Send, cache: str) -> None:
    headers = {"etag": asset.etag, "cache-control": cache}  # + SECURITY_HEADERS, added by the app
    if asset.etag in req.headers.get("if-none-match", ""):
        await send_empty(send, 304, headers)
        return
    await send_body(send, 200, asset.body, asset.content_type, headers)


async def redirect(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    enabled(rt)
    await send_empty(send, 308, {"location": "/ui/"})


async def index(rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    enabled(rt)
    asset = MANIFEST.get("index.html")
    if asset is None:
        raise not_found("the console's pages are not installed")
    await _serve(asset, req, send, "no-cache")  # always revalidated: a new release shows at once


async def asset(rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    enabled(rt)
    found = MANIFEST.get(params["file"])
    if found is None:
        raise not_found("no such console file")
    # Revalidated by ETag (cheap 304s) rather than cached blind: file names carry no content hash.
    await _serve(found, req, send, "no-cache")
