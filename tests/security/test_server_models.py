"""Classes 1 (server half) and 2: every client-supplied model name is checked once, right after decoding, in
every protocol (length and a safe charset; real names pass, path tricks and control bytes get a 400 naming
`model` in the client's shape, before any upstream is called); the router's memory stays bounded however
many names clients invent."""

from __future__ import annotations

import tracemalloc
from urllib.parse import quote

import httpx
import pytest

from smolgate.config import parse_config
from smolgate.errors import GatewayError
from smolgate.routing import Router
from tests.gateway.conftest import matrix_config, upstreams  # noqa: F401  (fixture)
from tests.gateway_server import GatewayServer

REAL = [
    "gpt-4o-mini",
    "claude-3-5-sonnet-20241022",
    "Qwen/Qwen3-8B",
    "hf.co/user/repo:Q4_K_M",
    "llama3.1:8b",
    "accounts/fireworks/models/x",
    "@cf/meta/llama-3",
    "gpt-4o@2024-08-06",
    "ft:gpt-4o-mini:org::abc123",
]
TRICKS = [
    "../../v1/other?",
    "m\r\nx-evil: 1",
    "a b",
    "m#frag",
    "%2e%2e/x",
    "a\\b",
    "./x",
    "x//y",
    "x/",
    "x/..",
    "a" * 300,
    "tab\tx",
    "nul\x00",
    "caf\u00e9",
    "m?alt=json",
]


@pytest.fixture(scope="module")
def gw(upstreams):  # noqa: F811
    with GatewayServer(matrix_config({k: f.url for k, f in upstreams.items()})) as server:
        yield server


MSG = [{"role": "user", "content": "name check"}]
BODY = {
    "/v1/chat/completions": lambda m: {"model": m, "messages": MSG},
    "/v1/responses": lambda m: {"model": m, "input": "name check"},
    "/v1/messages": lambda m: {"model": m, "max_tokens": 5, "messages": MSG},
    "/v1/messages/count_tokens": lambda m: {"model": m, "messages": MSG},
    "/api/chat": lambda m: {"model": m, "messages": MSG, "stream": False},
    "/api/generate": lambda m: {"model": m, "prompt": "name check", "stream": False},
    "/api/show": lambda m: {"model": m},
}


def names_model(path: str, r: httpx.Response) -> bool:
    j = r.json()
    if path.startswith("/api/"):
        return "model" in j["error"]
    if path.startswith("/v1/messages"):
        return j["error"]["type"] == "invalid_request_error" and "model" in j["error"]["message"]
    if "/models/" in path and ":" in path:  # Gemini
        return j["error"]["details"][0]["fieldViolations"][0]["field"] == "model"
    return j["error"]["param"] == "model"


@pytest.mark.parametrize("path", list(BODY))
def test_body_model_names_are_checked_in_every_protocol(gw, path):
    for name in REAL:  # addressed directly at the OpenAI upstream, which answers any name
        r = httpx.post(gw.url + path, json=BODY[path]("up-openai/" + name))
        assert r.status_code == 200, (name, r.text)
    for name in TRICKS:
        r = httpx.post(gw.url + path, json=BODY[path]("up-openai/" + name))
        assert r.status_code == 400 and names_model(path, r), (name, r.status_code, r.text)
        assert "\r" not in r.text and "x-evil" not in r.text and "a" * 300 not in r.text


@pytest.mark.parametrize("method", ["generateContent", "countTokens"])
def test_gemini_path_model_names_are_checked(gw, method):
    for name in ("via-openai", "models/via-openai"):
        r = httpx.post(
            f"{gw.url}/v1beta/models/{quote(name.removeprefix('models/'), safe='')}:{method}",
            json={"contents": [{"parts": [{"text": "name check"}]}]},
        )
        assert r.status_code == 200, r.text
    for name in ("m\r\nx-evil: 1", "a b", "m#frag", "a\\b", "..", "a?b", "a" * 300, "nul\x00"):
        path = f"/v1beta/models/{quote(name, safe='')}:{method}"
        r = httpx.post(gw.url + path, json={"contents": [{"parts": [{"text": "x"}]}]})
        assert r.status_code == 400 and names_model(path, r), (name, r.text)


def test_get_model_checks_the_name(gw):
    assert httpx.get(gw.url + "/v1/models/" + quote("up-openai/Qwen/Qwen3-8B", safe="/")).status_code == 200
    for name in ("up-openai/../../admin/accounts", "up-openai/a b", "up-openai/" + "a" * 300):
        r = httpx.get(gw.url + "/v1/models/" + quote(name, safe=""))
        assert r.status_code == 400 and r.json()["error"]["param"] == "model", name


def test_a_megabyte_model_name_is_a_short_400(gw):
    r = httpx.post(
        gw.url + "/v1/chat/completions", json={"model": "up-openai/" + "x" * (1 << 20), "messages": MSG}
    )
    assert r.status_code == 400 and len(r.content) < 1000


def test_the_router_remembers_a_bounded_number_of_invented_names():
    """Each distinct `provider/model` a client sends used to be cached forever (4 MiB names: +480 MB)."""
    cfg = parse_config(
        "providers:\n  - name: up\n    protocol: openai\n    base_url: http://127.0.0.1:9/v1\n"
        "models:\n  - name: fast\n    targets: [{provider: up, model: x}]\n"
        "    fallbacks: [slow]\n  - name: slow\n    targets: [{provider: up, model: y}]\n"
    )
    router = Router(cfg)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(20_000):
            assert router.resolve(f"up/{i:06d}-" + "n" * 240)[0].provider == "up"
        for i in range(50):
            with pytest.raises(GatewayError):  # too long to be a model name: never stored
                router.resolve("up/" + "x" * 65_536 + str(i))
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert grown < 2_000_000, grown
    assert [(r.provider, r.model) for r in router.resolve("fast")] == [("up", "x"), ("up", "y")]
