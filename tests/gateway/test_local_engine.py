"""The embedded engine behind the gateway: every official SDK asks a tiny random SmolVLM about an image.

Weights are random, so the words are noise; what users rely on is the shape: each SDK parses the
answer, streamed and not, the image really reached the model (it costs prompt tokens), usage adds up,
and a text-only model refuses an image with a clear 400.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anthropic
import httpx
import pytest

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1] / "engine")
)  # tests/engine modules import by basename
from checkpoints import make_checkpoint
from fixtures import shared_gguf_parsing
from test_video import write_video

from tests.gateway.clients import CLIENTS, Ask
from tests.gateway_server import GatewayServer


@pytest.fixture(scope="module")
def text_gateway():
    cfg = (
        "providers:\n  - name: local\n    protocol: local\n"  # the packaged SmolLM2-135M GGUF
        "models:\n  - name: text\n    targets: [{provider: local, model: default}]\n"
    )
    with shared_gguf_parsing(), GatewayServer(cfg) as gw:  # the GGUF parsed once per test process
        yield gw


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("client_cls", CLIENTS, ids=[c.name for c in CLIENTS])
def test_every_sdk_asks_the_local_vlm_about_an_image(vlm_gateway, png, client_cls, stream):
    c = client_cls(vlm_gateway.url)
    with_image = c.ask(
        "vlm", Ask(turns=[("user", "What is in this image?")], image=png, max_tokens=6, stream=stream)
    )
    without = c.ask("vlm", Ask(turns=[("user", "What is in this image?")], max_tokens=6, stream=stream))
    assert with_image.stop in ("end", "length")
    assert 0 < with_image.output_tokens <= 6 or (with_image.output_tokens == 0 and with_image.stop == "end")
    # the tiny model's 64×64 tiles are 4 image tokens each, plus the tile markers: the image is in the prompt
    assert with_image.input_tokens > without.input_tokens + 4


def test_greedy_local_answers_are_deterministic_across_protocols(vlm_gateway, png):
    a = CLIENTS[0](vlm_gateway.url).ask("vlm", Ask(turns=[("user", "Describe.")], image=png, max_tokens=8))
    # Gemini puts the text part before the image, as the OpenAI adapter does: the same prompt
    b = CLIENTS[3](vlm_gateway.url).ask(
        "vlm", Ask(turns=[("user", "Describe.")], image=png, max_tokens=8, stream=True)
    )
    assert a.text == b.text and a.output_tokens == b.output_tokens


def test_packaged_text_model_answers_and_refuses_images(text_gateway, png):
    r = httpx.post(
        text_gateway.url + "/v1/chat/completions",
        timeout=120,
        json={
            "model": "text",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
        },
    )
    assert r.status_code == 200
    assert "Paris" in r.json()["choices"][0]["message"]["content"]
    ac = anthropic.Anthropic(base_url=text_gateway.url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as info:
        ac.messages.create(
            model="text",
            max_tokens=5,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": __import__("base64").b64encode(png).decode(),
                            },
                        },
                        {"type": "text", "text": "what is this"},
                    ],
                }
            ],
        )
    assert "text-only" in str(info.value)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> bytes:
    return write_video(
        tmp_path_factory.mktemp("vid") / "clip.mp4", n_frames=30, fps=10, width=48, height=32, codec="h264"
    ).read_bytes()


def test_video_from_openai_video_url_and_gemini_inline_data(vlm_gateway, mp4):
    import base64

    data = base64.b64encode(mp4).decode()
    r = httpx.post(
        vlm_gateway.url + "/v1/chat/completions",
        timeout=120,
        json={
            "model": "vlm",
            "max_tokens": 4,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + data}},
                        {"type": "text", "text": "What happens?"},
                    ],
                }
            ],
        },
    )
    assert r.status_code == 200, r.text
    with_video = r.json()["usage"]["prompt_tokens"]
    g = httpx.post(
        vlm_gateway.url + "/v1beta/models/vlm:generateContent",
        timeout=120,
        json={
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"inline_data": {"mime_type": "video/mp4", "data": data}},
                        {"text": "What happens?"},
                    ],
                }
            ],
            "generationConfig": {"maxOutputTokens": 4},
        },
    )
    assert g.status_code == 200, g.text
    assert g.json()["usageMetadata"]["promptTokenCount"] == with_video
    plain = httpx.post(
        vlm_gateway.url + "/v1/chat/completions",
        timeout=120,
        json={"model": "vlm", "max_tokens": 4, "messages": [{"role": "user", "content": "What happens?"}]},
    )
    # 3 s at 10 fps sampled at 1 fps: three frames, each a tile plus a timestamp line
    assert with_video > plain.json()["usage"]["prompt_tokens"] + 3 * 4


def test_client_disconnect_cancels_local_generation(vlm_gateway):
    """A client that leaves mid-stream stops the engine at its next token, instead of it generating
    thousands of tokens nobody will read."""
    import time

    local = vlm_gateway.app.runtime.providers["local"]
    before = local.cancelled
    body = {
        "model": "vlm",
        "stream": True,
        "max_tokens": 4000,
        "messages": [{"role": "user", "content": "Go on."}],
    }
    with httpx.stream("POST", vlm_gateway.url + "/v1/chat/completions", json=body, timeout=60) as r:
        for chunk in r.iter_raw():
            if b"content" in chunk:
                break
    deadline = time.monotonic() + 60  # a liveness bound, not a speed claim
    while local.cancelled == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert local.cancelled == before + 1
    r = httpx.post(
        vlm_gateway.url + "/v1/chat/completions",
        timeout=120,
        json={"model": "vlm", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200


def test_server_stays_responsive_while_the_engine_computes(vlm_gateway):
    """Generation runs off the event loop: other requests are served while a long one is in progress."""
    import threading
    import time

    done = threading.Event()

    def long_request() -> None:
        httpx.post(
            vlm_gateway.url + "/v1/chat/completions",
            timeout=300,
            json={"model": "vlm", "max_tokens": 400, "messages": [{"role": "user", "content": "Go on."}]},
        )
        done.set()

    t = threading.Thread(target=long_request)
    t.start()
    local = vlm_gateway.app.runtime.providers["local"]
    while local.active == 0 and not done.is_set():  # wait until the engine is busy
        time.sleep(0.01)
    answered = [httpx.get(vlm_gateway.url + "/v1/models", timeout=30).status_code for _ in range(5)]
    still_generating = not done.is_set()
    t.join()
    assert answered == [200] * 5
    assert still_generating, "the long generation finished before the other requests were answered"


@pytest.mark.parametrize("quant", ["int8", "int8-dynamic", "int4"])
def test_quantized_local_model_serves(tmp_path_factory, png, quant):
    path, _ = make_checkpoint("smolvlm2-256m", tmp_path_factory.mktemp("q") / "tiny")
    cfg = (
        f"providers:\n  - name: local\n    protocol: local\n    model: {path}\n    quant: {quant}\n"
        "models:\n  - name: vlm\n    targets: [{provider: local, model: default}]\n"
    )
    with GatewayServer(cfg) as gw:
        r = CLIENTS[0](gw.url).ask("vlm", Ask(turns=[("user", "What is this?")], image=png, max_tokens=4))
        assert r.stop in ("end", "length") and r.input_tokens > 4
        from smolgate.engine.quant import QuantLinear

        model = gw.app.runtime.providers["local"].engine.model
        assert any(isinstance(m, QuantLinear) for m in model.modules()), "no layer was quantized"


def _image_body(data_url: str, kind: str = "image_url") -> dict:  # type: ignore[type-arg]
    return {
        "model": "vlm",
        "max_tokens": 2,
        "messages": [
            {
                "role": "user",
                "content": [{"type": kind, kind: {"url": data_url}}, {"type": "text", "text": "?"}],
            }
        ],
    }


def test_undecodable_media_is_the_clients_error_naming_the_part(vlm_gateway):
    r = httpx.post(
        vlm_gateway.url + "/v1/chat/completions",
        timeout=60,
        json=_image_body("data:image/png;base64,iVBORw0KGgoAAAAA"),  # a PNG signature, then nothing
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "messages[0].content[0]"
    assert err["message"] == "'messages[0].content[0]' is not a decodable image"
    r = httpx.post(
        vlm_gateway.url + "/v1/chat/completions",
        timeout=60,
        json=_image_body("data:video/mp4;base64,AAAAIGZ0eXBpc29t", kind="video_url"),
    )
    assert r.status_code == 400 and "cannot decode video" in r.json()["error"]["message"], r.text


def test_engine_failures_are_internal_and_a_full_queue_is_overloaded(vlm_gateway, monkeypatch):
    """A ValueError deep inside the engine is the server's fault (500), not the client's (400); a full admission
    queue asks the client to come back (503 + Retry-After)."""
    from smolgate.engine.scheduler import Limits

    engine = vlm_gateway.app.runtime.providers["local"].engine
    body = {"model": "vlm", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}

    def broken(*_: object, **__: object) -> None:
        raise ValueError("shape mismatch deep inside")

    monkeypatch.setattr(engine.model.text, "forward", broken)  # the text decoder: every prefill path runs it
    r = httpx.post(vlm_gateway.url + "/v1/chat/completions", timeout=60, json=body)
    assert r.status_code == 500 and r.json()["error"]["message"] == "the local engine failed", r.text
    monkeypatch.undo()
    monkeypatch.setattr(engine.scheduler, "limits", Limits(max_queue=0))
    r = httpx.post(vlm_gateway.url + "/v1/chat/completions", timeout=60, json=body)
    assert r.status_code == 503 and r.headers.get("retry-after") == "1", (r.status_code, r.headers, r.text)
    assert "at capacity" in r.json()["error"]["message"]
    monkeypatch.undo()
    assert httpx.post(vlm_gateway.url + "/v1/chat/completions", timeout=60, json=body).status_code == 200


def test_metrics_show_the_local_engines_batch_and_tokens(vlm_gateway):
    from prometheus_client.parser import text_string_to_metric_families

    body = {"model": "vlm", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 6}
    r = httpx.post(vlm_gateway.url + "/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200
    text = httpx.get(vlm_gateway.url + "/metrics", timeout=30).text
    m = {
        s.name: s for f in text_string_to_metric_families(text) for s in f.samples if s.labels.get("provider")
    }
    assert m["smolgate_engine_generated_tokens_total"].value >= r.json()["usage"]["completion_tokens"] - 1
    assert m["smolgate_engine_batch_size"].value == 0  # idle again
    assert m["smolgate_engine_waiting"].value == 0
    assert "smolgate_engine_tokens_per_second" in m
    ready = httpx.get(vlm_gateway.url + "/ready", timeout=30).json()
    assert ready["checks"]["engine"] == "ok"
