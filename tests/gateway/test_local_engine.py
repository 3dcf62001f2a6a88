"""The embedded engine behind the gateway: every official SDK asks a tiny random SmolVLM about an image.

Weights are random, so the words are noise; what users rely on is the shape: each SDK parses the
answer, streamed and not, the image really reached the model (it costs prompt tokens), usage adds up,
and a text-only model refuses an image with a clear 400.
"""

from __future__ import annotations

import anthropic
import httpx
import pytest

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))  # tests/engine modules import by basename
from checkpoints import make_checkpoint  # noqa: E402
from tests.gateway.clients import CLIENTS, Ask
from tests.gateway_server import GatewayServer


@pytest.fixture(scope="module")
def vlm_gateway(tmp_path_factory):
    path, _ = make_checkpoint("smolvlm2-256m", tmp_path_factory.mktemp("vlm") / "tiny-smolvlm2")
    cfg = (f"providers:\n  - name: local\n    protocol: local\n    model: {path}\n"
           "models:\n  - name: vlm\n    targets: [{provider: local, model: default}]\n")
    with GatewayServer(cfg) as gw:
        yield gw


@pytest.fixture(scope="module")
def text_gateway():
    cfg = ("providers:\n  - name: local\n    protocol: local\n"  # the packaged SmolLM2-135M GGUF
           "models:\n  - name: text\n    targets: [{provider: local, model: default}]\n")
    with GatewayServer(cfg) as gw:
        yield gw


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("client_cls", CLIENTS, ids=[c.name for c in CLIENTS])
def test_every_sdk_asks_the_local_vlm_about_an_image(vlm_gateway, png, client_cls, stream):
    c = client_cls(vlm_gateway.url)
    with_image = c.ask("vlm", Ask(turns=[("user", "What is in this image?")], image=png, max_tokens=6, stream=stream))
    without = c.ask("vlm", Ask(turns=[("user", "What is in this image?")], max_tokens=6, stream=stream))
    assert with_image.stop in ("end", "length")
    assert 0 < with_image.output_tokens <= 6 or (with_image.output_tokens == 0 and with_image.stop == "end")
    # the tiny model's 64×64 tiles are 4 image tokens each, plus the tile markers: the image is in the prompt
    assert with_image.input_tokens > without.input_tokens + 4


def test_greedy_local_answers_are_deterministic_across_protocols(vlm_gateway, png):
    a = CLIENTS[0](vlm_gateway.url).ask("vlm", Ask(turns=[("user", "Describe.")], image=png, max_tokens=8))
    # Gemini puts the text part before the image, as the OpenAI adapter does: the same prompt
    b = CLIENTS[3](vlm_gateway.url).ask("vlm", Ask(turns=[("user", "Describe.")], image=png, max_tokens=8, stream=True))
    assert a.text == b.text and a.output_tokens == b.output_tokens


def test_packaged_text_model_answers_and_refuses_images(text_gateway, png):
    r = httpx.post(text_gateway.url + "/v1/chat/completions", timeout=120, json={
        "model": "text", "max_tokens": 20, "messages": [{"role": "user", "content": "What is the capital of France?"}]})
    assert r.status_code == 200
    assert "Paris" in r.json()["choices"][0]["message"]["content"]
    ac = anthropic.Anthropic(base_url=text_gateway.url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as info:
        ac.messages.create(model="text", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": __import__("base64").b64encode(png).decode()}},
            {"type": "text", "text": "what is this"}]}])
    assert "text-only" in str(info.value)
