"""The vision bridge end to end: every official SDK, streaming and not, sends an image to a model that cannot see;
the upstream (a real fake server) receives the local VLM's text about it instead, and the answer says so.

The bridge's model is a tiny random SmolVLM2: its descriptions are noise, but deterministic, so what is asserted
is the shape — `[image 1: …]` in place of the image, no image bytes upstream, the header, the cache."""

from __future__ import annotations

import base64
import re

import anthropic
import openai
import pytest

from tests.fakes.vision_rules import has_media
from tests.gateway.clients import CLIENTS, AnthropicClient, Ask, GeminiClient, OllamaClient, OpenAIChatClient

from .conftest import BRIDGE, image

HEADER = re.compile(r"images=(\d+), cached=(\d+)")


def bridged_text(body: object) -> str:
    """Everything the upstream received, as text (what a blind model reads)."""
    return str(body)


def counts(headers) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    m = HEADER.fullmatch(headers[BRIDGE])
    assert m is not None, headers[BRIDGE]
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("client_cls", CLIENTS, ids=[c.name for c in CLIENTS])
def test_every_sdk_gets_an_answer_from_a_blind_model_that_read_the_description(
    gateway, fakes, headers_seen, client_cls, stream
):
    png = image((10, 120, 240))
    up = fakes["openai"]
    before = len(up.requests)
    r = client_cls(gateway.url).ask(
        "blind", Ask(turns=[("user", "What is in this picture?")], image=png, stream=stream)
    )
    sent = up.requests[before:]
    assert len(sent) == 1  # declared blind: the image never went up, not even once
    body = sent[0].json
    assert not has_media(body)
    assert base64.b64encode(png).decode()[:40] not in bridged_text(body)
    assert "[image 1: " in bridged_text(body)
    # the fake model echoes the last user text: the description reached the model as text
    assert "What is in this picture?" in r.text and "[image 1: " in r.text
    assert counts(headers_seen[-1])[0] == 1


def test_a_second_request_with_the_same_image_is_described_from_the_cache(gateway, fakes, headers_seen):
    png = image((1, 2, 3))
    c = OpenAIChatClient(gateway.url)
    c.ask("blind", Ask(turns=[("user", "Look.")], image=png))
    first_text = bridged_text(fakes["openai"].last.json["messages"])
    assert counts(headers_seen[-1]) == (1, 0)  # cold: the model ran
    c.ask("blind", Ask(turns=[("user", "Look.")], image=png, stream=True))
    assert counts(headers_seen[-1]) == (1, 1)  # the same bytes: from the cache
    assert bridged_text(fakes["openai"].last.json["messages"]) == first_text  # the same description
    c.ask("blind", Ask(turns=[("user", "Look.")], image=image((3, 2, 1))))
    assert counts(headers_seen[-1]) == (1, 0)  # other bytes: described afresh


def test_the_same_image_twice_in_one_request_runs_the_model_once(gateway, fakes, headers_seen):
    png = image((7, 7, 7))
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    parts = [{"type": "text", "text": "Compare."}] + [{"type": "image_url", "image_url": {"url": url}}] * 2
    sdk.chat.completions.create(model="blind", messages=[{"role": "user", "content": parts}])  # type: ignore[list-item]
    assert counts(headers_seen[-1]) == (2, 1)
    text = bridged_text(fakes["openai"].last.json)
    assert "[image 1: " in text and "[image 2: " in text


@pytest.mark.parametrize(
    "proto, client_cls",
    [
        ("openai", OpenAIChatClient),
        ("anthropic", AnthropicClient),
        ("gemini", GeminiClient),
        ("ollama", OllamaClient),
    ],
)
def test_a_refusal_in_each_upstreams_own_words_is_learned_and_bridged(
    gateway, fakes, headers_seen, proto, client_cls
):
    up, png = fakes[proto], image((200, 100, 0))
    c = client_cls(gateway.url)
    before = len(up.requests)
    r = c.ask(f"learn-{proto}", Ask(turns=[("user", "Read it.")], image=png))
    refused, bridged = up.requests[before:]  # the image went up once, was refused, and the bridge took over
    assert has_media(refused.json) and not has_media(bridged.json)
    assert "[image 1: " in bridged_text(bridged.json) and "[image 1: " in r.text
    assert counts(headers_seen[-1])[0] == 1
    before = len(up.requests)
    c.ask(f"learn-{proto}", Ask(turns=[("user", "Read it again.")], image=png, stream=True))
    (only,) = up.requests[before:]  # remembered: straight through the bridge
    assert not has_media(only.json)
    assert counts(headers_seen[-1]) == (1, 1)


def test_a_fallback_that_sees_gets_the_original_image(gateway, fakes, headers_seen):
    png = image((50, 60, 70))
    blind, sees = fakes["openai"], fakes["anthropic"]
    b0, s0 = len(blind.requests), len(sees.requests)
    r = AnthropicClient(gateway.url).ask("fallback", Ask(turns=[("user", "What now?")], image=png))
    (refused,) = blind.requests[b0:]  # the blind target got the description (and refused our key)
    assert not has_media(refused.json) and "[image 1: " in bridged_text(refused.json)
    (seen,) = sees.requests[s0:]
    assert has_media(seen.json)  # the fallback that sees got the image itself
    assert base64.b64encode(png).decode() in bridged_text(seen.json)
    assert "images=1" in r.text  # the fake counts the images it received
    assert BRIDGE not in headers_seen[-1]  # the answer did not come through the bridge


def test_a_tool_results_screenshot_is_bridged_too(gateway, fakes):
    png = image((9, 99, 199))
    sdk = anthropic.Anthropic(base_url=gateway.url, api_key="k", max_retries=0)
    sdk.messages.create(
        model="blind",
        max_tokens=20,
        messages=[
            {"role": "user", "content": "Take a screenshot."},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [
                            {"type": "text", "text": "here it is"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": base64.b64encode(png).decode(),
                                },
                            },
                        ],
                    }
                ],
            },
        ],
        tools=[{"name": "shot", "description": "screenshot", "input_schema": {"type": "object"}}],
    )
    body = fakes["openai"].last.json
    assert not has_media(body)
    tool_msg = next(m for m in body["messages"] if m["role"] == "tool")
    assert "here it is" in str(tool_msg["content"]) and "[image 1: " in str(tool_msg["content"])


def test_a_video_becomes_text_too(gateway, fakes, headers_seen, tmp_path):
    from google import genai
    from test_video import write_video  # tests/engine, on the path (conftest)

    mp4 = write_video(
        tmp_path / "clip.mp4", n_frames=20, fps=10, width=48, height=32, codec="h264"
    ).read_bytes()
    client = genai.Client(api_key="k", http_options={"base_url": gateway.url})
    r = client.models.generate_content(
        model="blind",
        contents=[genai.types.Part.from_bytes(data=mp4, mime_type="video/mp4"), "What happens?"],
    )
    body = fakes["openai"].last.json
    assert not has_media(body) and "[video 1: " in bridged_text(body)
    assert "[video 1: " in (r.text or "")
    assert counts(headers_seen[-1]) == (1, 0)
