"""SSRF: what a client's media URL can make the gateway connect to, and how much it can make it fetch.

The address policy is a table test (refused and allowed, IPv4 and IPv6, embedded IPv4 forms). The fetcher is
driven against a real loopback image host: URLs that name or resolve to non-public addresses are refused
before any connection, malformed URLs (also as redirect targets) are a 400 naming the field, and the
per-request caps (server.max_media_urls / max_media_bytes, bounded parallelism, one fetch per request) hold
through the running gateway.
"""

from __future__ import annotations

import asyncio
import gzip

import httpx
import pytest
from aiohttp import web

from smolgate import address_policy
from smolgate.errors import GatewayError
from smolgate.fetch import MAX_PARALLEL, fetch_media
from tests.fakes.harness import FakeUpstream
from tests.gateway.conftest import matrix_config, matrix_upstreams
from tests.gateway_server import GatewayServer

REFUSED = [
    # IPv4 special-purpose registry, multicast, reserved
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "100.64.0.1",
    "100.100.100.200",
    "100.127.255.255",
    "127.0.0.1",
    "127.1.2.3",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.1",
    "192.0.0.9",
    "192.0.0.170",
    "192.0.0.192",
    "192.0.2.1",
    "192.31.196.1",
    "192.52.193.1",
    "192.88.99.1",
    "192.168.1.1",
    "192.175.48.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    # IPv6: unspecified, loopback, IPv4-compatible and -mapped, NAT64, discard, IETF, documentation, ULA…
    "::",
    "::1",
    "::127.0.0.1",
    "::8.8.8.8",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::ffff:0:127.0.0.1",
    "64:ff9b::127.0.0.1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::100.64.0.1",
    "64:ff9b:1::8.8.8.8",
    "100::1",
    "100:0:0:1::1",
    "2001:1::1",
    "2001:2::1",
    "2001:3::1",
    "2001:4:112::1",
    "2001:10::1",
    "2001:20::1",
    "2001:db8::1",
    "2620:4f:8000::1",
    "3fff::1",
    "5f00::1",
    "fc00::1",
    "fd00:ec2::254",
    "fec0::1",
    "fe80::1",
    "fe80::1%eth0",
    "ff02::1",
    "ff0e::1",
    "4000::1",
    "8000::1",
    # 6to4 and Teredo carrying a refused IPv4 (6to4 of 127.0.0.1, 169.254.169.254, 10.0.0.1, 100.64.0.1)
    "2002:7f00:1::",
    "2002:a9fe:a9fe::1",
    "2002:a00:1::1",
    "2002:6440:1::1",
    "2001:0:7f00:1::ffff:fffe",  # Teredo server 127.0.0.1
    "2001:0:808:808::80ff:fffe",  # Teredo client (inverted) 127.0.0.1
    "2001:0:808:808::5601:5601",  # Teredo client (inverted) 169.254.169.254
    "not an address",
    "",
]
ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",
    "100.128.0.0",
    "172.32.0.1",
    "192.0.1.1",
    "198.20.0.1",
    "223.255.255.255",
    "2606:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001::1",
    "2400:cb00::1",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
    "2001:0:808:808::f7f7:f7f7",  # Teredo: server 8.8.8.8, client (inverted) 8.8.8.8
]


@pytest.mark.parametrize("address", REFUSED)
def test_special_purpose_addresses_are_refused(address):
    assert not address_policy.allowed(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_global_unicast_addresses_are_allowed(address):
    assert address_policy.allowed(address)


# ------------------------------------------------------------------------------------- a real image host

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
    b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND"
    b"\xaeB`\x82"
)


class ImageHost(FakeUpstream):
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/cat.png", lambda r: web.Response(body=PNG, content_type="image/png"))
        app.router.add_get("/to", lambda r: web.Response(status=302, headers={"Location": r.query["loc"]}))
        app.router.add_get("/big", self.big)
        app.router.add_get("/slow.png", self.slow)
        app.router.add_get("/gzip", self.gzip)

    async def big(self, request: web.Request) -> web.StreamResponse:
        """`n` KiB of image, chunked (no Content-Length), or with one when `len=1`."""
        n = int(request.query["n"]) * 1024
        if request.query.get("len"):
            return web.Response(body=b"\0" * n, content_type="image/png")
        return await self.write_stream(request, [(0, b"\0" * 1024)] * (n // 1024), "image/png")

    async def gzip(self, request: web.Request) -> web.Response:
        body = gzip.compress(b"\0" * (64 << 20), compresslevel=1)
        return web.Response(body=body, headers={"Content-Type": "image/png", "Content-Encoding": "gzip"})

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.Response(body=PNG, content_type="image/png")


@pytest.fixture(scope="module")
def host():
    h = ImageHost().start()
    yield h
    h.stop()


async def _refusal(url: str, allow_private: bool = False) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await fetch_media(url, param="messages[0].content[0].url", allow_private=allow_private)
    assert info.value.status == 400 and info.value.param == "messages[0].content[0].url", info.value.message
    return info.value


@pytest.mark.parametrize(
    "form",
    [
        "127.0.0.1",
        "localhost",
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::1]",
    ],
)
async def test_names_and_numerals_for_loopback_are_refused_before_connecting(host, form):
    before = len(host.requests)
    err = await _refusal(f"http://{form}:{host.port}/cat.png")
    assert "refused" in err.message
    assert len(host.requests) == before


@pytest.mark.parametrize(
    "url",
    [
        "http://100.64.0.1/x.png",
        "http://[2002:7f00:1::]/x.png",
        "http://[64:ff9b::7f00:1]/x.png",
        "http://[2001:0:7f00:1::ffff:fffe]/x.png",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./x",
        "http://192.0.0.192/x.png",
    ],
)
async def test_special_purpose_targets_are_refused(url):
    assert "refused" in (await _refusal(url)).message


@pytest.mark.parametrize(
    "url",
    [
        "http://h:99999/a.png",
        "http://h:abc/a.png",
        "http://h:0/a.png",
        "http://h:+80/a.png",
        "http://[::1/a.png",
        "http://[::1]x/a.png",
        "http://[fe80::1%25eth0]/a.png",
        "http://user:pw@example.com/a.png",
        "http://example.com@127.0.0.1/a.png",
        "http://example.com\\@127.0.0.1/a.png",
        "http://ex ample.com/a.png",
        "http://%31%32%37.0.0.1/a.png",
        "http:///a.png",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "ftp://example.com/a.png",
        "data:image/png;base64,AAAA",
    ],
)
async def test_malformed_or_non_http_urls_are_a_400_naming_the_field(url):
    await _refusal(url, allow_private=True)


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:99999/x.png",
        "http://[::1/x.png",
        "file:///etc/passwd",
        "http://u:p@127.0.0.1/x.png",
        "javascript:alert(1)",
        "http://h:abc/",
    ],
)
async def test_each_redirect_target_is_checked_like_the_url(host, target):
    before = len(host.requests)
    await _refusal(str(httpx.URL(host.url + "/to", params={"loc": target})), allow_private=True)
    assert len(host.requests) == before + 1  # the redirect itself, nothing after it


async def test_a_redirect_to_a_metadata_host_is_refused(host):
    """Even with private addresses allowed (as here, to reach the loopback host), a hop to a cloud metadata
    host name is refused."""
    before = len(host.requests)
    url = str(httpx.URL(host.url + "/to", params={"loc": "http://metadata.google.internal/x"}))
    assert "metadata" in (await _refusal(url, allow_private=True)).message
    assert len(host.requests) == before + 1


async def test_allowed_fetch_returns_the_bytes(host):
    data, mtype = await fetch_media(f"{host.url}/cat.png", param="p", allow_private=True)
    assert data == PNG and mtype == "image/png"


# ------------------------------------------------------------------------------- per-request caps (gateway)


def _gateway_config(upstreams: dict, server: str, extra_provider: str = "") -> str:
    cfg = matrix_config({k: f.url for k, f in upstreams.items()}, f"server: {{{server}}}\n")
    return cfg.replace("models:\n", extra_provider + "models:\n", 1)


def _ask(gw: GatewayServer, urls: list[str], model: str = "via-gemini") -> httpx.Response:
    content = [{"type": "text", "text": "x"}] + [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return httpx.post(
        gw.url + "/v1/chat/completions",
        timeout=30,
        json={"model": model, "messages": [{"role": "user", "content": content}]},
    )


@pytest.fixture(scope="module")
def capped(upstreams, host):
    server = "allow_private_image_urls: true, max_media_urls: 3, max_media_bytes: 300000"
    with GatewayServer(_gateway_config(upstreams, server)) as gw:
        yield gw


def test_more_media_urls_than_the_cap_is_a_400_before_any_fetch(capped, host, upstreams):
    before, sent = len(host.requests), len(upstreams["gemini"].requests)
    r = _ask(capped, [f"{host.url}/cat.png"] * 4)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "messages[0].content[4].url" and "max_media_urls" in err["message"]
    assert len(host.requests) == before and len(upstreams["gemini"].requests) == sent
    assert _ask(capped, [f"{host.url}/cat.png"] * 3).status_code == 200


@pytest.mark.parametrize("sized", [False, True], ids=["chunked", "content-length"])
def test_fetched_bytes_are_capped_per_request(capped, upstreams, host, sized):
    sent = len(upstreams["gemini"].requests)
    q = "&len=1" if sized else ""
    r = _ask(capped, [f"{host.url}/big?n=200{q}", f"{host.url}/big?n=150{q}"])  # 350 KiB > 300,000 bytes
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert "max_media_bytes" in err["message"] and err["param"].startswith("messages[0].content[")
    assert len(upstreams["gemini"].requests) == sent
    assert _ask(capped, [f"{host.url}/big?n=200{q}", f"{host.url}/big?n=60{q}"]).status_code == 200


def test_fetches_run_in_parallel_but_bounded(capped, upstreams, host):
    with GatewayServer(_gateway_config(upstreams, "allow_private_image_urls: true")) as gw:
        host.reset()
        r = _ask(gw, [f"{host.url}/slow.png?i={i}" for i in range(10)])
        assert r.status_code == 200, r.text
        assert len(host.requests) == 10
        assert 2 <= host.max_in_flight <= MAX_PARALLEL


def test_media_is_fetched_once_per_request_across_fallback_targets(upstreams, host):
    """A first target that needs bytes but cannot be reached, then one that also needs bytes: the URLs are
    fetched once (the caps are per client request, not per attempt)."""
    dead = (
        "  - name: dead-gemini\n    protocol: gemini\n    base_url: http://127.0.0.1:9\n"
        "    accounts: [{api_key: k}]\n    timeouts: {connect: 2}\n"
    )
    cfg = _gateway_config(upstreams, "allow_private_image_urls: true", dead)
    cfg = cfg.replace(
        "models:\n",
        "models:\n  - name: two\n    targets: [{provider: dead-gemini, model: m}, "
        "{provider: up-ollama, model: ollama-model}]\n",
        1,
    )
    with GatewayServer(cfg) as gw:
        host.reset()
        sent = len(upstreams["ollama"].requests)
        r = _ask(gw, [f"{host.url}/cat.png", f"{host.url}/big?n=2"], model="two")
        assert r.status_code == 200, r.text
        assert len(upstreams["ollama"].requests) == sent + 1
        assert sorted(q.path for q in host.requests) == ["/big", "/cat.png"]


@pytest.fixture(scope="module")
def upstreams():
    with matrix_upstreams() as fakes:
        yield fakes


async def test_a_compressed_body_is_refused_not_inflated(host):
    """A 64 KiB gzip of zeros inflates to 64 MiB: the fetcher asks for identity and never inflates."""
    before = len(host.requests)
    err = await _refusal(f"{host.url}/gzip", allow_private=True)
    assert "compressed" in err.message
    assert host.requests[before].headers.get("accept-encoding") == "identity"
