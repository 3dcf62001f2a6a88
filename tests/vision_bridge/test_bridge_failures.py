"""When the bridge cannot describe an image, the client is told, in its own protocol's shape; an image is never
dropped silently and never sent to a target that cannot see it."""

from __future__ import annotations

import asyncio
import base64
import time

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors

from smolgate.canonical import Image, Message, Request, Text
from smolgate.errors import ErrorKind, GatewayError
from smolgate.routing import Route
from tests.gateway_server import GatewayServer

from .conftest import bridge_config, image


def _chat(url: str, model: str, *pngs: bytes, stream: bool = False) -> object:
    sdk = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=60)
    parts: list[dict[str, object]] = [{"type": "text", "text": "What is this?"}]
    parts += [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(p).decode()}}
        for p in pngs
    ]
    return sdk.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": parts}],
        stream=stream,  # type: ignore[misc, list-item]
    )


def test_bridge_off_refuses_instead_of_sending_the_image(gateway, fakes):
    n = len(fakes["openai"].requests)
    with pytest.raises(openai.BadRequestError) as e:
        _chat(gateway.url, "bridge-off", image((1, 1, 1)))
    assert "vision bridge is off" in str(e.value)
    sdk = anthropic.Anthropic(base_url=gateway.url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as a:
        sdk.messages.create(
            model="bridge-off",
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
                                "data": base64.b64encode(image((1, 1, 1))).decode(),
                            },
                        }
                    ],
                }
            ],
        )
    assert a.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert len(fakes["openai"].requests) == n  # nothing went upstream


def test_more_images_than_max_images_is_a_clear_400_and_repeats_are_free(gateway, fakes, headers_seen):
    with pytest.raises(openai.BadRequestError) as e:
        _chat(gateway.url, "one-image", image((5, 5, 1)), image((5, 5, 2)))
    assert "describes at most 1 per request (vision_bridge.max_images)" in str(e.value)
    twice = image((5, 5, 3))
    _chat(gateway.url, "one-image", twice, twice)  # one description serves both
    assert headers_seen[-1]["x-smolgate-vision-bridge"] == "images=2, cached=1"


def test_the_prompt_is_part_of_the_cache_key(gateway, headers_seen):
    png = image((6, 6, 6))
    _chat(gateway.url, "blind", png)
    _chat(gateway.url, "one-image", png)  # its own prompt ("Read this."): described again
    assert headers_seen[-1]["x-smolgate-vision-bridge"] == "images=1, cached=0"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_undecodable_image_is_the_clients_error_naming_its_part(gateway, stream):
    with pytest.raises(openai.BadRequestError) as e:
        _chat(gateway.url, "blind", b"\x89PNG\r\n\x1a\n-not-an-image", stream=stream)
    err = e.value.body
    assert err["param"] == "messages[0].content[1]"  # type: ignore[index]
    assert "the vision bridge could not describe image 1 (messages[0].content[1])" in err["message"]  # type: ignore[index]


def test_an_engine_failure_is_a_500_in_each_protocols_shape(gateway, monkeypatch):
    engine = gateway.app.runtime.providers["local"].engine

    def broken(*_: object, **__: object) -> None:
        raise ValueError("shape mismatch deep inside")

    monkeypatch.setattr(engine.model, "forward", broken)
    with pytest.raises(openai.InternalServerError) as e:
        _chat(gateway.url, "blind", image((8, 8, 8)), stream=True)
    assert "could not describe image 1 (messages[0].content[1]): the local engine failed" in str(e.value)
    client = genai.Client(api_key="k", http_options={"base_url": gateway.url})
    with pytest.raises(genai_errors.ServerError) as g:
        client.models.generate_content(
            model="blind",
            contents=[genai.types.Part.from_bytes(data=image((8, 8, 9)), mime_type="image/png"), "What?"],
        )
    assert g.value.code == 500 and "the local engine failed" in str(g.value.message)


def test_the_bridge_counts_against_the_requests_deadline(gateway):
    """A request whose deadline has passed does not start describing: a 504-class timeout, not a hang."""
    bridge = gateway.app.runtime.dispatcher.vision
    req = Request(
        model="blind", messages=[Message(role="user", content=[Image(data=image((4, 4, 4))), Text(text="?")])]
    )
    run = bridge.begin(req, deadline=time.monotonic() - 1)
    with pytest.raises(GatewayError) as e:
        asyncio.run(run.shape(req, Route("up-openai", "gpt-textonly")))
    assert e.value.kind is ErrorKind.TIMEOUT and "deadline" in e.value.message


def test_without_a_local_model_the_client_is_told(fakes):
    with GatewayServer(bridge_config(None, {k: f.url for k, f in fakes.items()})) as gw:
        r = httpx.post(
            gw.url + "/v1/messages",
            headers={"anthropic-version": "2023-06-01"},
            json={
                "model": "blind",
                "max_tokens": 5,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {"type": "url", "url": "https://example.com/cat.png"},
                            }
                        ],
                    }
                ],
            },
        )
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error"
        assert "no local vision model is configured for the vision bridge" in err["message"]
        assert "example.com" not in r.text  # the URL was neither fetched nor echoed
