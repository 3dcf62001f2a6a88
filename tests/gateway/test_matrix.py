"""Every client protocol (official SDK) × every upstream protocol (real fake server), streaming and not.

The fake upstreams all run tests/fakes/script.py, so one expectation holds across the matrix: the reply
echoes what the upstream saw (system prompt, turn count, image count), tools are called on "weather",
`max_tokens` counts words, and usage counts words.
"""

from __future__ import annotations

import pytest

from tests.gateway.clients import CLIENTS, Ask, ToolExchange

UPSTREAMS = ["openai", "openai-responses", "anthropic", "gemini", "ollama"]
MATRIX = [(c, u, s) for c in CLIENTS for u in UPSTREAMS for s in (False, True)]
IDS = [f"{c.name}->{u}-{'stream' if s else 'plain'}" for c, u, s in MATRIX]


@pytest.fixture(scope="module")
def clients(gateway):
    return {c: c(gateway.url) for c in CLIENTS}


def _words(text: str) -> int:
    return len(text.split(" "))


@pytest.mark.parametrize("client_cls,upstream,stream", MATRIX, ids=IDS)
def test_plain_text_and_usage(clients, upstreams, client_cls, upstream, stream):
    r = clients[client_cls].ask(f"via-{upstream}", Ask(turns=[("user", "hello there")], stream=stream))
    assert r.text == "You said: hello there | system=none images=0 turns=1"
    assert r.stop == "end"
    assert r.output_tokens == _words(r.text)
    assert r.input_tokens == 2  # the fake counts the words it saw
    # the upstream got our upstream key, never the client's
    seen = upstreams[upstream].last
    assert "client-key" not in str(seen.headers)


@pytest.mark.parametrize("client_cls,upstream,stream", MATRIX, ids=IDS)
def test_system_prompt_and_multi_turn(clients, client_cls, upstream, stream):
    ask = Ask(
        system="Be terse.",
        turns=[("user", "hi"), ("assistant", "hello"), ("user", "how are you")],
        stream=stream,
    )
    r = clients[client_cls].ask(f"via-{upstream}", ask)
    assert r.text == "You said: how are you | system=Be terse. images=0 turns=3"


@pytest.mark.parametrize("client_cls,upstream,stream", MATRIX, ids=IDS)
def test_image_input(clients, upstreams, png, client_cls, upstream, stream):
    r = clients[client_cls].ask(
        f"via-{upstream}", Ask(turns=[("user", "what is this")], image=png, stream=stream)
    )
    assert r.text.endswith("images=1 turns=1")


@pytest.mark.parametrize("client_cls,upstream,stream", MATRIX, ids=IDS)
def test_tool_call_round_trip(clients, client_cls, upstream, stream):
    c = clients[client_cls]
    first = c.ask(
        f"via-{upstream}", Ask(turns=[("user", "what is the weather in Paris")], tools=True, stream=stream)
    )
    assert first.stop == "tool"
    assert len(first.tool_calls) == 1
    call_id, name, args = first.tool_calls[0]
    assert name == "get_weather" and args == {"city": "Paris"}
    if client_cls.name != "ollama":  # Ollama's wire has no tool-call ids
        assert call_id
    x = ToolExchange(call_id=call_id or "call_0", name=name, args=args, result="sunny and 21C")
    second = c.ask(
        f"via-{upstream}",
        Ask(turns=[("user", "what is the weather in Paris")], tools=True, exchange=x, stream=stream),
    )
    assert second.stop == "end"
    assert second.text.startswith("The tool said:") and "sunny and 21C" in second.text


@pytest.mark.parametrize("client_cls,upstream,stream", MATRIX, ids=IDS)
def test_stop_reason_length(clients, client_cls, upstream, stream):
    r = clients[client_cls].ask(
        f"via-{upstream}", Ask(turns=[("user", "count my words")], max_tokens=3, stream=stream)
    )
    assert r.text == "You said: count"
    assert r.stop == "length"


# The OpenAI Responses API has no stop parameter, so it is not in this part of the matrix.
STOP_MATRIX = [m for m in MATRIX if getattr(m[0], "takes_stop", True)]


@pytest.mark.parametrize(
    "client_cls,upstream,stream",
    STOP_MATRIX,
    ids=[i for m, i in zip(MATRIX, IDS, strict=True) if m in STOP_MATRIX],
)
def test_stop_sequence(clients, client_cls, upstream, stream):
    r = clients[client_cls].ask(
        f"via-{upstream}", Ask(turns=[("user", "stop here")], stop=["| system"], stream=stream)
    )
    assert r.text == "You said: stop here "
    if client_cls.name == "anthropic" and upstream == "anthropic":
        assert r.stop == "stop_sequence"  # the only pair whose both wires carry the matched sequence
    else:
        assert r.stop in ("end", "stop_sequence")
