"""Class 5: upstream error text reaches a client bounded, sanitised and with every secret of the provider
masked (non-2xx bodies, 200-with-error bodies, in-stream error events); the redacted detail is in the log;
an upstream's "this key is invalid" disables the account whatever status it came with."""

from __future__ import annotations

import base64
import json
import logging

import httpx
import pytest

from tests.gateway_server import GatewayServer
from tests.security.evil_upstream import (
    STREAM_TYPE,
    EvilUpstream,
    Out,
    RawRequest,
    chunk,
    chunked_head,
    complete_stream,
    gemini_answer,
    json_response,
    provider_config,
    sse,
)

KEY = "sk-scrub-test-account-key-0001"
HEADER_SECRET = "org-secret-header-value-0001"
NASTY = (
    f"bad request (key {KEY}, b64 {base64.b64encode(KEY.encode()).decode()}, header {HEADER_SECRET}) "
    "\x1b[31mred\x1b[0m\r\nInjected-Header: 1\x00\u202e" + "x" * 5000
)


def error_body(protocol: str, status: int, message: str) -> dict:
    if protocol == "openai":
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    if protocol == "anthropic":
        return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    if protocol == "gemini":
        return {"error": {"code": status, "message": message, "status": "INVALID_ARGUMENT"}}
    return {"error": message}


def stream_error(protocol: str, message: str) -> bytes:
    if protocol == "openai":
        return sse({"error": {"message": message, "type": "server_error"}})
    if protocol == "anthropic":
        return sse({"type": "error", "error": {"type": "api_error", "message": message}}, "error")
    if protocol == "gemini":
        return sse({"error": {"code": 500, "message": message, "status": "INTERNAL"}})
    return json.dumps({"error": message}).encode() + b"\n"


def _config(protocol: str, url: str, keys: tuple[str, ...] = (KEY,)) -> str:
    return provider_config(protocol, url, keys=keys, extra=f"    headers: {{x-org: {HEADER_SECRET}}}\n")


def assert_clean(text: str) -> None:
    assert KEY not in text and HEADER_SECRET not in text
    assert base64.b64encode(KEY.encode()).decode().rstrip("=") not in text
    assert "\\u001b" not in text and "\x1b" not in text and "\\r\\n" not in text and "\\u0000" not in text
    assert "\\u202e" not in text and "\u202e" not in text


def _message(r: httpx.Response) -> str:
    return r.json()["error"]["message"]


@pytest.mark.parametrize("status", [400, 404, 429, 500])
@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini", "ollama"])
def test_an_upstream_error_body_is_scrubbed_and_bounded(protocol, status, caplog):
    async def script(req: RawRequest, out: Out) -> bool:
        # retry-after 0: a 429 must not leave the one account cooling for the second request
        return await out.send(
            json_response(error_body(protocol, status, NASTY), status, {"retry-after": "0"})
        )

    caplog.set_level(logging.WARNING, logger="smolgate")
    with EvilUpstream(script) as up, GatewayServer(_config(protocol, up.url)) as gw:
        for stream in (False, True):
            r = httpx.post(
                gw.url + "/v1/chat/completions",
                timeout=10,
                json={"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
            )
            assert r.status_code >= 400
            assert_clean(r.text)
            msg = _message(r)
            assert "bad request" in msg and "***" in msg  # the useful part stays; the secrets are masked
            assert len(msg) <= 600
    logged = "\n".join(rec.getMessage() for rec in caplog.records if rec.name.startswith("smolgate"))
    assert "bad request" in logged and "***" in logged  # the detail is kept for the operator …
    assert KEY not in logged and HEADER_SECRET not in logged  # … redacted too


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini", "ollama"])
def test_an_in_stream_error_event_is_scrubbed(protocol):
    async def script(req: RawRequest, out: Out) -> bool:
        first = complete_stream(protocol, "partial answer")[:-1]  # a started stream, not finished …
        if protocol == "anthropic":
            first = first[:3]
        body = b"".join(chunk(f) for f in first) + chunk(stream_error(protocol, NASTY))  # … then an error
        return await out.send(chunked_head(content_type=STREAM_TYPE[protocol]) + body + b"0\r\n\r\n")

    with EvilUpstream(script) as up, GatewayServer(_config(protocol, up.url)) as gw:
        with httpx.stream(
            "POST",
            gw.url + "/v1/chat/completions",
            timeout=10,
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        ) as r:
            raw = b"".join(r.iter_raw()).decode()
        assert "partial answer" in raw and "bad request" in raw
        assert_clean(raw)
        errors = [
            json.loads(line[6:])["error"]["message"]
            for line in raw.splitlines()
            if line.startswith("data: {") and '"error"' in line
        ]
        assert errors and all(len(m) <= 600 for m in errors)


def test_a_200_with_an_error_object_is_an_error_not_an_empty_answer():
    """Gemini can answer 200 with `{"error": {...}}`: the client gets an error in its own shape (scrubbed)."""

    async def script(req: RawRequest, out: Out) -> bool:
        return await out.send(json_response({"error": {"code": 500, "message": NASTY, "status": "INTERNAL"}}))

    with EvilUpstream(script) as up, GatewayServer(_config("gemini", up.url)) as gw:
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            timeout=10,
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 502, r.text
        assert "bad request" in _message(r)
        assert_clean(r.text)
        r = httpx.post(
            gw.url + "/v1beta/models/m:generateContent",
            timeout=10,
            json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        )
        assert r.status_code >= 500 and "candidates" not in r.json()


BAD, GOOD = "bad-account-key-0000001", "good-account-key-000002"

# Each protocol's way of saying "this key is not valid" (Gemini's is a 400, not a 401).
INVALID_KEY = {
    "gemini": (
        400,
        {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            }
        },
    ),
    "openai": (
        401,
        {
            "error": {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
    ),
    "anthropic": (
        401,
        {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
    ),
    "ollama": (401, {"error": "unauthorized"}),
}


def _key_of(req: RawRequest) -> str:
    auth = req.headers.get("authorization", "")
    return req.headers.get("x-goog-api-key") or req.headers.get("x-api-key") or auth.removeprefix("Bearer ")


@pytest.mark.parametrize("protocol", list(INVALID_KEY))
def test_an_invalid_key_answer_disables_the_account(protocol):
    status, body = INVALID_KEY[protocol]

    async def script(req: RawRequest, out: Out) -> bool:
        if _key_of(req) == BAD:
            return await out.send(json_response(body, status))
        if protocol == "gemini":
            return await out.send(json_response(gemini_answer("fine")))
        frames = complete_stream(protocol, "fine")
        if protocol == "openai":
            answer = {
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}
                ],
            }
            return await out.send(json_response(answer))
        if protocol == "anthropic":
            answer = {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "m",
                "content": [{"type": "text", "text": "fine"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }
            return await out.send(json_response(answer))
        return await out.send(json_response(json.loads(frames[-1])))

    cfg = _config(protocol, "URL", keys=(BAD, GOOD)).replace("retry: {attempts: 1", "retry: {attempts: 2")
    with EvilUpstream(script) as up, GatewayServer(cfg.replace("URL", up.url)) as gw:
        for _ in range(6):
            r = httpx.post(
                gw.url + "/v1/chat/completions",
                timeout=10,
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert r.status_code == 200, r.text
    assert [_key_of(q) for q in up.requests].count(BAD) == 1  # tried once, then disabled like a 401


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "inf"},
        {"retry-after": "nan"},
        {"retry-after": "1e300"},
        {"retry-after-ms": "inf"},
        {"x-ratelimit-remaining-requests": "inf"},
        {"x-ratelimit-remaining-tokens": "nan"},
    ],
)
@pytest.mark.parametrize("status", [200, 429])
def test_upstream_numbers_that_are_not_numbers_are_ignored(status, headers):
    """Rate-limit headers are the upstream's text: `inf`, `nan` or 1e300 must not become a 500 or a header
    with three hundred digits."""
    from tests.security.evil_upstream import openai_answer

    async def script(req: RawRequest, out: Out) -> bool:
        body = openai_answer("fine") if status == 200 else error_body("openai", 429, "slow down")
        return await out.send(json_response(body, status, headers))

    with EvilUpstream(script) as up, GatewayServer(_config("openai", up.url)) as gw:
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            timeout=10,
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert r.status_code == status, r.text
    assert len(r.headers.get("retry-after", "")) <= 6
