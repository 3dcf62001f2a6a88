"""Class 4: an upstream's redirect never carries our key anywhere (on either transport); it is a clean 502."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway_server import GatewayServer
from tests.security.evil_upstream import EvilUpstream, Out, RawRequest, gemini_answer, json_response, response

KEY = "sk-redirect-test-key-0001"


@pytest.mark.parametrize("transport", ["h1", "aiohttp"])
@pytest.mark.parametrize("status", [302, 307, 308])
@pytest.mark.parametrize("protocol", ["anthropic", "gemini"])
def test_a_redirect_to_another_origin_is_not_followed(transport, status, protocol):
    async def collector(req: RawRequest, out: Out) -> bool:
        return await out.send(json_response(gemini_answer("stolen")))

    with EvilUpstream(collector) as other:

        async def redirector(req: RawRequest, out: Out) -> bool:
            return await out.send(response(b"", status, {"location": other.url + req.target}))

        with EvilUpstream(redirector) as up:
            cfg = (
                f"providers:\n  - name: p\n    protocol: {protocol}\n    base_url: {up.url}\n"
                f"    transport: {transport}\n    accounts: [{{api_key: {KEY}}}]\n"
                "    headers: {x-extra-secret: header-secret-value-0001}\n"
                "retry: {attempts: 1, deadline: 10}\n"
            )
            with GatewayServer(cfg) as gw:
                for stream in (False, True):
                    r = httpx.post(
                        gw.url + "/v1/chat/completions",
                        timeout=10,
                        json={
                            "model": "p/some-model",
                            "stream": stream,
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                    )
                    assert r.status_code == 502, r.text
                    assert r.json()["error"]["message"]
                    assert KEY not in r.text and "header-secret" not in r.text
            assert len(up.requests) == 2
        assert other.connections == 0 and not other.requests  # nothing (and no key) went to the other origin
