"""Signed reasoning state of other providers survives a Responses client: with `include:
["reasoning.encrypted_content"]` the reasoning item carries it, and when the client sends the item back the
upstream gets its own signed form again (Anthropic thinking + signature, Gemini thoughtSignature).
Real codecs end to end on the provider's wire bytes; only the HTTP hops are left out."""

from __future__ import annotations

import json

import orjson

from smolgate.protocols import codec
from smolgate.protocols.base import RequestContext
from smolgate.protocols.openai_responses_stream import ResponsesStreamEncoder

R, A, G = codec("openai-responses"), codec("anthropic"), codec("gemini")
TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
ANTHROPIC_REPLY = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude",
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 5, "output_tokens": 7},
    "content": [
        {"type": "thinking", "thinking": "I should look it up.", "signature": "SIG-anthropic-123"},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
}


def client_request(include: bool, input_items: list | str = "weather?") -> bytes:
    body = {"model": "m", "input": input_items, "tools": [TOOL], "store": False}
    if include:
        body["include"] = ["reasoning.encrypted_content"]
    return orjson.dumps(body)


def replay(output: list[dict]) -> list[dict]:
    """What a client sends on the next turn: the output items as they came, then the tool result."""
    call = next(i for i in output if i["type"] == "function_call")
    return [
        {"role": "user", "content": "weather?"},
        *output,
        {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"},
    ]


def test_anthropic_thinking_signature_round_trips_through_encrypted_content():
    req = R.decode_request(client_request(True), RequestContext())
    out = orjson.loads(R.encode_response(A.decode_response(orjson.dumps(ANTHROPIC_REPLY)), req))["output"]
    reasoning = out[0]
    assert reasoning["type"] == "reasoning" and reasoning["summary"][0]["text"] == "I should look it up."
    assert reasoning["encrypted_content"].startswith("smg1.")
    nxt = R.decode_request(client_request(True, replay(out)), RequestContext())
    wire = orjson.loads(A.encode_request(nxt, "claude").body)
    assistant = wire["messages"][1]["content"]
    assert assistant[0] == {
        "type": "thinking",
        "thinking": "I should look it up.",
        "signature": "SIG-anthropic-123",
    }
    assert assistant[1]["type"] == "tool_use" and assistant[1]["id"] == "toolu_1"


def test_encrypted_content_only_when_included():
    req = R.decode_request(client_request(False), RequestContext())
    out = orjson.loads(R.encode_response(A.decode_response(orjson.dumps(ANTHROPIC_REPLY)), req))["output"]
    assert out[0]["type"] == "reasoning" and "encrypted_content" not in out[0]


def test_anthropic_streamed_signature_is_packed_at_the_end_of_the_item():
    frames = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 5, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Look it up."},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "SIG-stream-9"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "{}"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 9},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    wire = b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in frames)
    dec = A.stream_decoder()
    events = dec.feed(wire) + dec.close()
    req = R.decode_request(client_request(True), RequestContext())
    enc = ResponsesStreamEncoder(req)
    sse = b"".join(enc.feed(e) for e in events).decode()
    done = [
        json.loads(line[6:])["item"]
        for line in sse.splitlines()
        if line.startswith("data: ") and '"response.output_item.done"' in line
    ]
    assert done[0]["type"] == "reasoning" and done[0]["encrypted_content"].startswith("smg1.")
    nxt = R.decode_request(client_request(True, replay(done)), RequestContext())
    thinking = orjson.loads(A.encode_request(nxt, "claude").body)["messages"][1]["content"][0]
    assert thinking == {"type": "thinking", "thinking": "Look it up.", "signature": "SIG-stream-9"}


def test_gemini_thought_signature_on_a_call_round_trips():
    gemini_reply = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "GEM-SIG-7",
                        }
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4},
    }
    req = R.decode_request(client_request(True), RequestContext())
    out = orjson.loads(R.encode_response(G.decode_response(orjson.dumps(gemini_reply)), req))["output"]
    assert [i["type"] for i in out] == ["reasoning", "function_call"]
    nxt = R.decode_request(client_request(True, replay(out)), RequestContext())
    contents = orjson.loads(G.encode_request(nxt, "gemini-3").body)["contents"]
    call_part = next(p for c in contents for p in c["parts"] if "functionCall" in p)
    assert call_part["thoughtSignature"] == "GEM-SIG-7"
    # a client that did not ask for encrypted content does not see the carrier item
    plain = R.decode_request(client_request(False), RequestContext())
    out = orjson.loads(R.encode_response(G.decode_response(orjson.dumps(gemini_reply)), plain))["output"]
    assert [i["type"] for i in out] == ["function_call"]


def test_openai_encrypted_content_passes_untouched():
    req = R.decode_request(
        client_request(
            True,
            [
                {"role": "user", "content": "hi"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAB-openai-blob"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "more"},
            ],
        ),
        RequestContext(),
    )
    wire = orjson.loads(R.encode_request(req, "gpt").body)
    assert wire["input"][1]["encrypted_content"] == "gAAAAB-openai-blob"


def test_a_damaged_blob_is_a_400_naming_the_field():
    import pytest

    from smolgate.errors import GatewayError

    with pytest.raises(GatewayError) as info:
        R.decode_request(
            client_request(
                True, [{"type": "reasoning", "summary": [], "encrypted_content": "smg1.!!!not-base64"}]
            ),
            RequestContext(),
        )
    assert info.value.param == "input[0].encrypted_content"


def test_gemini_streamed_call_signature_round_trips():
    chunk = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "GEM-SIG-S",
                        }
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4},
    }
    dec = G.stream_decoder()
    events = dec.feed(b"data: " + orjson.dumps(chunk) + b"\n\n") + dec.close()
    enc = ResponsesStreamEncoder(R.decode_request(client_request(True), RequestContext()))
    sse = b"".join(enc.feed(e) for e in events).decode()
    done = [
        json.loads(line[6:])["item"]
        for line in sse.splitlines()
        if line.startswith("data: ") and '"response.output_item.done"' in line
    ]
    assert [i["type"] for i in done] == ["reasoning", "function_call"]
    nxt = R.decode_request(client_request(True, replay(done)), RequestContext())
    contents = orjson.loads(G.encode_request(nxt, "gemini-3").body)["contents"]
    assert (
        next(p for c in contents for p in c["parts"] if "functionCall" in p)["thoughtSignature"]
        == "GEM-SIG-S"
    )
