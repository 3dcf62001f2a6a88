"""The console's static files at /ui: the package's files only (a fixed manifest), with content types, ETags
and the console's security headers; no path a client sends reaches the file system."""

from __future__ import annotations

import httpx

from smolgate.console.assets import MANIFEST
from smolgate.console.sessions import COOKIE, Signer
from tests.console_api.conftest import ADMIN
from tests.gateway_server import GatewayServer

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _secure(r: httpx.Response) -> None:
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_the_pages_are_served_with_types_etags_and_security_headers(gateway):
    r = httpx.get(gateway.url + "/ui")
    assert r.status_code == 308 and r.headers["location"] == "/ui/"
    _secure(r)
    r = httpx.get(gateway.url + "/ui/")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.content == MANIFEST["index.html"].body
    _secure(r)
    etag = r.headers["etag"]
    again = httpx.get(gateway.url + "/ui/", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    _secure(again)
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}
    for name, asset in MANIFEST.items():
        r = httpx.get(f"{gateway.url}/ui/assets/{name}")
        assert r.status_code == 200 and r.content == asset.body, name
        ext = name[name.rfind(".") :]
        if ext in types:
            assert r.headers["content-type"].startswith(types[ext]), name
        _secure(r)


def test_only_files_of_the_manifest_are_served(gateway):
    for path in (
        "/ui/assets/nope.js",
        "/ui/assets/..%2f..%2fconfig.py",
        "/ui/assets/%2e%2e",
        "/ui/assets/%2e%2e%2fassets.py",
        "/ui/assets/__init__.py",
        "/ui/assets/",
    ):
        r = httpx.get(gateway.url + path)
        assert r.status_code == 404, (path, r.status_code)
        _secure(r)  # errors under /ui carry the headers too
    assert "assets.py" not in MANIFEST and all("/" not in n for n in MANIFEST)


def test_the_console_can_be_turned_off(tmp_path):
    cfg = f"data_dir: {tmp_path}\nconsole: {{enabled: false}}\nserver: {{admin_key: {ADMIN}}}\n"
    with GatewayServer(cfg) as gw:
        for path in ("/ui", "/ui/", "/ui/assets/index.html", "/ui/api/session"):
            assert httpx.get(gw.url + path).status_code == 404, path
        assert httpx.post(gw.url + "/ui/api/session", json={"admin_key": ADMIN}).status_code == 404
        # a session cookie (one made before the console was turned off) opens nothing
        cookie = {"cookie": f"{COOKIE}={Signer(ADMIN.encode(), 60).issue()[0]}"}
        assert httpx.get(gw.url + "/admin/health", headers=cookie).status_code == 401
        assert httpx.get(gw.url + "/admin/health", headers={"x-api-key": ADMIN}).status_code == 200
