"""Class 3: one client cannot exhaust the server — oversized or slow requests are refused in the client's own
error shape and the connection closed; the body is read only after authentication; a connection cap answers
503 at once instead of letting held-open connections use up descriptors."""

from __future__ import annotations

import select
import socket
import time

import httpx
import pytest

from tests.gateway_server import GatewayServer
from tests.security.server_raw import connect, exchange, parse, read_until_closed, request, send

KEY = "sk-limits-client-0001"
AUTH = {"authorization": f"Bearer {KEY}"}


def config(**server: object) -> str:
    limits = {
        "max_header_bytes": 4096,
        "max_headers": 20,
        "max_url_bytes": 1024,
        "header_timeout": 0.5,
        "body_timeout": 0.5,
        "keepalive_timeout": 0.3,
        **server,
    }
    lines = "".join(f"  {k}: {v}\n" for k, v in limits.items())
    return (
        "providers:\n  - name: up\n    protocol: openai\n    base_url: http://127.0.0.1:9/v1\n"
        "models:\n  - name: m\n    targets: [{provider: up, model: x}]\n"
        f"keys:\n  - {{key: {KEY}}}\nserver:\n{lines}"
    )


@pytest.fixture(scope="module")
def gw():
    with GatewayServer(config()) as server:
        yield server


def test_headers_that_never_end_get_a_408_in_the_clients_shape():
    """Slowloris: a request line and part of the headers, then a byte now and then; cut off at header_timeout
    from the first byte however the bytes trickle. (Its own server, with 2 s: the module's 0.5 s also runs from
    the connection, and a loaded machine that delays our first bytes that long gets the silent close for a
    connection that sent nothing.)"""
    with GatewayServer(config(header_timeout=2)) as gw, connect(gw.port) as sock:
        send(sock, b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-slow: ")
        t0 = time.monotonic()
        raw, closed = b"", False
        while not closed and time.monotonic() - t0 < 8:
            # a byte sent after the server closed would be answered with a reset, which discards its unread
            # 408: trickle only while nothing has come back
            if select.select([sock], [], [], 0)[0] or not send(sock, b"a"):
                break
            got, closed = read_until_closed(sock, 0.1)
            raw += got  # (a busy machine may bring the answer in one read and the close in the next)
        if not closed:
            got, closed = read_until_closed(sock, 5)
            raw += got
    r = parse(raw, closed)
    assert r.status == 408 and r.closed
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "timeout_error"  # Anthropic's shape


def test_a_connection_that_sends_nothing_is_closed(gw):
    with connect(gw.port) as sock:
        raw, closed = read_until_closed(sock, 8)
    assert closed and raw == b""


def test_a_megabyte_of_headers_is_refused_with_431_before_it_is_read(gw):
    r = exchange(
        gw.port, b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nx-big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    )
    assert r.status == 431 and r.closed
    assert r.json()["error"]["type"] == "invalid_request_error"  # OpenAI's shape


def test_too_many_headers_is_431_in_the_ollama_shape(gw):
    many = {f"x-h{i}": "1" for i in range(200)}
    r = exchange(gw.port, request("GET", "/api/tags", many))
    assert r.status == 431 and r.closed
    assert isinstance(r.json()["error"], str)


def test_an_overlong_url_is_414(gw):
    r = exchange(gw.port, request("GET", "/v1/models?x=" + "a" * 4000))
    assert r.status == 414 and r.closed
    assert "URL" in r.json()["error"]["message"]


def test_a_body_that_stops_arriving_gets_a_408(gw):
    head = request("POST", "/api/chat", {**AUTH, "content-length": "100", "content-type": "application/json"})
    r = exchange(gw.port, head + b'{"model": "m"', timeout=8)
    assert r.status == 408 and r.closed
    assert "body" in r.json()["error"]


def test_the_body_is_read_only_after_authentication(gw):
    """An unauthenticated POST announcing 30 MiB is answered after its headers and 64 KiB, and the server closes
    instead of reading the rest (which the client never sends). An ordinary SDK request refused early (headers
    and a small body sent separately) still gets a clean 401, not a reset: a small rest is drained."""
    for key in (None, "sk-wrong-key-0000"):
        headers = {"content-length": str(30 << 20), "content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        r = exchange(gw.port, request("POST", "/v1/chat/completions", headers) + b" " * 65536, timeout=8)
        assert r.status == 401 and r.closed, r.raw[:200]
        assert r.headers.get("connection") == "close"
        assert r.json()["error"]["type"] == "authentication_error"
    headers = {**AUTH, "content-length": str(1 << 30), "content-type": "application/json"}
    r = exchange(gw.port, request("POST", "/v1/chat/completions", headers), timeout=8)
    assert r.status == 413 and r.closed
    with httpx.Client(base_url=gw.url) as client:
        for _ in range(3):
            r = client.post("/v1/chat/completions", json={"model": "m", "messages": [], "pad": "x" * 50_000})
            assert r.status_code == 401


def test_idle_keepalive_connections_close_after_keepalive_timeout(gw):
    with connect(gw.port) as sock:
        send(sock, request("GET", "/v1/models", AUTH))
        raw, closed = read_until_closed(sock, 4)  # uvicorn's default keeps it 5 s
    assert closed and parse(raw, closed).status == 200


def test_a_pipelined_flood_is_cut_off():
    with GatewayServer(config(header_timeout=5, body_timeout=5)) as server:
        flood = request("GET", "/v1/models", AUTH) * 200
        with connect(server.port) as sock:
            send(sock, flood)
            raw, closed = read_until_closed(sock, 8)
    assert closed
    assert raw.count(b"HTTP/1.1 200") <= 20  # at most the queue bound, not all 200


def test_connections_past_the_cap_get_a_503_at_once_and_normal_requests_resume():
    """Half-open connections fill the cap; further connections are answered 503 and closed immediately (they
    hold no descriptor); once the holders go, requests succeed again."""
    with GatewayServer(config(max_connections=8, header_timeout=30)) as server:
        holders = [connect(server.port) for _ in range(8)]
        try:
            for s in holders:
                send(s, b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            deadline = time.monotonic() + 5
            while len(server._server.server_state.connections) < 8 and time.monotonic() < deadline:
                time.sleep(0.02)
            refused = [
                exchange(server.port, request("GET", "/v1/models", AUTH), timeout=5) for _ in range(30)
            ]
            assert all(r.status == 503 and r.closed for r in refused), [r.raw[:80] for r in refused]
            assert (
                refused[0].headers.get("retry-after")
                and "connections" in refused[0].json()["error"]["message"]
            )
            assert len(server._server.server_state.connections) <= 8
        finally:
            for s in holders:
                s.close()
        deadline = time.monotonic() + 5
        while server._server.server_state.connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert httpx.get(server.url + "/v1/models", headers=AUTH).status_code == 200


def test_a_client_that_stops_reading_is_dropped():
    """A client that asks and never reads: its connection is dropped after body_timeout of a full send buffer,
    so it cannot hold the server (or an upstream account lease) forever."""
    many = "".join(
        f"  - name: model-{i:05d}-{'x' * 200}\n    targets: [{{provider: up, model: x}}]\n"
        for i in range(3000)
    )
    cfg = config(body_timeout=0.5).replace(
        "models:\n  - name: m\n    targets: [{provider: up, model: x}]\n", "models:\n" + many
    )
    with GatewayServer(cfg) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            send(sock, request("GET", "/v1/models", AUTH) * 8)
            state = server._server.server_state
            deadline = time.monotonic() + 5
            while not state.tasks and time.monotonic() < deadline:  # it is being answered
                time.sleep(0.02)
            assert state.connections
            deadline = time.monotonic() + 10
            while server._server.server_state.connections and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not server._server.server_state.connections
        finally:
            sock.close()
