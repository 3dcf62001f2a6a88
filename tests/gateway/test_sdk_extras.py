"""SDK generations and the non-chat endpoints: Anthropic 1.x, google-genai v1 and v1beta, model lists,
token counting, Ollama metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anthropic
import httpx
import httpx2  # the HTTP client anthropic 2.x is built on
import ollama
import openai
import pytest
from google import genai
from google.genai import types

from tests.gateway.clients import Ask, GeminiClient

LEGACY = Path(__file__).resolve().parents[2] / ".venv" / "legacy" / "anthropic1"

LEGACY_SCRIPT = r"""
import json, sys, anthropic
assert anthropic.__version__.startswith("1."), anthropic.__version__
c = anthropic.Anthropic(base_url=sys.argv[1], api_key="client-key", max_retries=0)
m = c.messages.create(model="via-openai", max_tokens=100, messages=[{"role": "user", "content": "legacy hello"}])
with c.messages.stream(model="via-gemini", max_tokens=100, messages=[{"role": "user", "content": "legacy stream"}]) as s:
    f = s.get_final_message()
print(json.dumps({"version": anthropic.__version__, "plain": m.content[0].text, "stop": m.stop_reason,
                  "stream": f.content[0].text, "stream_stop": f.stop_reason}))
"""


def test_anthropic_1x_client_generation(gateway, upstreams):
    """anthropic 1.x sends x-api-key + anthropic-version 2023-06-01 (the 2.x SDK sends Bearer + 2026-10-21)."""
    assert LEGACY.is_dir(), "scripts/bootstrap.sh test installs anthropic 1.x into .venv/legacy/anthropic1"
    env = {**os.environ, "PYTHONPATH": str(LEGACY)}
    out = subprocess.run(
        [sys.executable, "-c", LEGACY_SCRIPT, gateway.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["plain"].startswith("You said: legacy hello") and r["stop"] == "end_turn"
    assert r["stream"].startswith("You said: legacy stream") and r["stream_stop"] == "end_turn"


def test_anthropic_2x_client_sends_bearer_and_new_version(gateway):
    seen: dict[str, str] = {}

    def hook(request: httpx.Request) -> None:
        seen.update({k.lower(): v for k, v in request.headers.items()})

    c = anthropic.Anthropic(
        base_url=gateway.url,
        api_key="client-key",
        max_retries=0,
        http_client=httpx2.Client(event_hooks={"request": [hook]}),
    )
    m = c.messages.create(
        model="via-anthropic", max_tokens=50, messages=[{"role": "user", "content": "new gen"}]
    )
    assert m.content[0].text.startswith("You said: new gen")
    assert seen.get("authorization") == "Bearer client-key"
    assert seen.get("anthropic-version") != "2023-06-01"


@pytest.mark.parametrize("api_version", [None, "v1beta", "v1"])
@pytest.mark.parametrize("stream", [False, True])
def test_google_genai_default_v1_and_v1beta(gateway, api_version, stream):
    r = GeminiClient(gateway.url, api_version=api_version).ask(
        "via-openai", Ask(turns=[("user", "gemini hi")], stream=stream)
    )
    assert r.text.startswith("You said: gemini hi")


def test_model_lists_in_each_protocols_shape(gateway):
    oc = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    ids = {m.id for m in oc.models.list()}
    assert {"via-openai", "via-anthropic", "via-gemini", "via-ollama"} <= ids
    assert oc.models.retrieve("via-openai").id == "via-openai"
    with pytest.raises(openai.NotFoundError):
        oc.models.retrieve("no-such-model")

    ac = anthropic.Anthropic(base_url=gateway.url, api_key="k", max_retries=0)
    assert "via-openai" in {m.id for m in ac.models.list()}

    gc = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=gateway.url, api_version="v1beta"))
    names = {m.name for m in gc.models.list()}
    assert any(n.endswith("via-openai") for n in names)

    tags = ollama.Client(host=gateway.url).list()
    assert "via-openai" in {m.model for m in tags.models}


def test_token_counting(gateway):
    ac = anthropic.Anthropic(base_url=gateway.url, api_key="k", max_retries=0)
    n = ac.messages.count_tokens(
        model="via-openai", messages=[{"role": "user", "content": "count these words please"}]
    )
    assert n.input_tokens > 0
    raw = httpx.post(
        gateway.url + "/v1/messages/count_tokens",
        json={"model": "via-openai", "messages": [{"role": "user", "content": "x"}]},
        headers={"anthropic-version": "2023-06-01"},
    )
    assert raw.status_code == 200 and set(raw.json()) == {"input_tokens"}

    gc = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=gateway.url, api_version="v1beta"))
    assert gc.models.count_tokens(model="via-openai", contents="count these words please").total_tokens > 0


def test_ollama_metadata_endpoints(gateway):
    c = ollama.Client(host=gateway.url)
    assert c.show("via-openai") is not None
    assert httpx.get(gateway.url + "/api/version").json().get("version")


def test_gemini_key_in_query_and_header_reach_the_same_route(gateway):
    body = {"contents": [{"role": "user", "parts": [{"text": "q key"}]}]}
    a = httpx.post(gateway.url + "/v1beta/models/via-openai:generateContent?key=abc", json=body)
    b = httpx.post(
        gateway.url + "/v1/models/via-openai:generateContent", json=body, headers={"x-goog-api-key": "abc"}
    )
    assert a.status_code == b.status_code == 200
    assert a.json()["candidates"][0]["content"]["parts"][0]["text"].startswith("You said: q key")
