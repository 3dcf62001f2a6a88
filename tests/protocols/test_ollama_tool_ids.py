"""Ollama tool calls carry `id` and `function.index` as current Ollama sends them, both ways.

Without them, two calls of one turn are glued into one by stream builders that key on id/index (litellm), and
a client cannot say which result answers which call, so two calls of the *same* function (the weather in two
cities) are indistinguishable. Each test runs the real gateway with a fake upstream that refuses results that
do not answer the call they claim to (as Anthropic refuses an unknown tool_use_id).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from tests.fakes.harness import FakeUpstream
from tests.gateway_server import GatewayServer

CITIES = {"Paris": "sunny", "Rome": "rain"}


def _answer(city: str) -> str:
    return f"{CITIES[city]} in {city}"


def _anthropic_error(message: str) -> web.Response:
    return web.json_response(
        {"type": "error", "error": {"type": "invalid_request_error", "message": message}}, status=400
    )


class TwoCallsAnthropic(FakeUpstream):
    """An Anthropic upstream whose model calls get_weather twice in one turn, then reports both results; it
    checks each tool_result answers a tool_use of the previous turn and holds that call's city."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        msgs = body["messages"]
        last = msgs[-1]["content"]
        results = [b for b in last if isinstance(last, list) and b.get("type") == "tool_result"]
        if not results:
            return await self._reply(
                request,
                body,
                [
                    {
                        "type": "tool_use",
                        "id": f"toolu_{city}",
                        "name": "get_weather",
                        "input": {"city": city},
                    }
                    for city in CITIES
                ],
                "tool_use",
            )
        calls = {b["id"]: b["input"]["city"] for b in msgs[-2]["content"] if b.get("type") == "tool_use"}
        said = []
        for r in results:
            city = calls.get(r["tool_use_id"])
            if city is None:
                return _anthropic_error(
                    f"messages.{len(msgs) - 1}.content: unexpected `tool_use_id` found in "
                    "`tool_result` blocks. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message."
                )
            text = r["content"] if isinstance(r["content"], str) else "".join(c["text"] for c in r["content"])
            if city not in text:
                return _anthropic_error(f"result for {r['tool_use_id']} is about another call: {text!r}")
            said.append(text)
        if len(results) != len(calls):
            return _anthropic_error(
                "`tool_use` ids were found without `tool_result` blocks immediately after"
            )
        return await self._reply(
            request, body, [{"type": "text", "text": " / ".join(sorted(said))}], "end_turn"
        )

    async def _reply(
        self, request: web.Request, body: dict[str, Any], blocks: list[dict[str, Any]], stop: str
    ) -> web.StreamResponse:
        usage = {"input_tokens": 10, "output_tokens": 5}
        msg = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return web.json_response(msg)

        def sse(typ: str, **data: Any) -> tuple[float, bytes]:
            return 0.0, f"event: {typ}\ndata: {json.dumps({'type': typ, **data})}\n\n".encode()

        frames = [sse("message_start", message={**msg, "content": [], "stop_reason": None})]
        for i, b in enumerate(blocks):
            if b["type"] == "tool_use":
                frames.append(sse("content_block_start", index=i, content_block={**b, "input": {}}))
                frames.append(
                    sse(
                        "content_block_delta",
                        index=i,
                        delta={"type": "input_json_delta", "partial_json": json.dumps(b["input"])},
                    )
                )
            else:
                frames.append(sse("content_block_start", index=i, content_block={"type": "text", "text": ""}))
                frames.append(
                    sse("content_block_delta", index=i, delta={"type": "text_delta", "text": b["text"]})
                )
            frames.append(sse("content_block_stop", index=i))
        frames.append(sse("message_delta", delta={"stop_reason": stop, "stop_sequence": None}, usage=usage))
        frames.append(sse("message_stop"))
        return await self.write_stream(request, frames, "text/event-stream")


class TwoCallsOllama(FakeUpstream):
    """A current-Ollama upstream: the two calls come on one streamed line with ids and indexes; a tool message
    must name the call it answers with tool_call_id (the fake checks the city matches)."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/chat", self.chat)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        tools = [m for m in body["messages"] if m["role"] == "tool"]
        base = {"model": body["model"], "created_at": "2026-01-01T00:00:00Z"}
        if not tools:
            calls = [
                {
                    "id": f"call_{city.lower()}",
                    "function": {"index": i, "name": "get_weather", "arguments": {"city": city}},
                }
                for i, city in enumerate(CITIES)
            ]
            lines = [
                {**base, "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": False}
            ]
        else:
            for m in tools:
                city = m.get("tool_call_id", "").removeprefix("call_").capitalize()
                if city not in CITIES or city not in m["content"]:
                    return web.json_response({"error": f"tool result not matched to a call: {m}"}, status=400)
            text = " / ".join(sorted(m["content"] for m in tools))
            lines = [{**base, "message": {"role": "assistant", "content": text}, "done": False}]
        end = {"done": True, "done_reason": "stop", "prompt_eval_count": 7, "eval_count": 3}
        if body.get("stream") is False:
            return web.json_response({**lines[0], **end})
        lines.append({**base, "message": {"role": "assistant", "content": ""}, **end})
        frames = [(0.0, json.dumps(x).encode() + b"\n") for x in lines]
        return await self.write_stream(request, frames, "application/x-ndjson")


@pytest.fixture(scope="module")
def gateway():
    anth, oll = TwoCallsAnthropic().start(), TwoCallsOllama().start()
    cfg = (
        f"providers:\n"
        f"  - {{name: anth, protocol: anthropic, base_url: {anth.url}, accounts: [{{api_key: k}}]}}\n"
        f"  - {{name: oll, protocol: ollama, base_url: {oll.url}, accounts: [{{api_key: k}}]}}\n"
        "models:\n  - {name: via-anthropic, targets: [{provider: anth, model: claude-x}]}\n"
        "  - {name: via-ollama, targets: [{provider: oll, model: llama-x}]}\n"
    )
    with GatewayServer(cfg) as gw:
        yield gw
    anth.stop()
    oll.stop()


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_ollama_client_sees_each_call_with_id_and_index_and_answers_each(gateway, stream):
    ask = {"role": "user", "content": "Weather in Paris and Rome?"}
    body = {"model": "via-anthropic", "stream": stream, "tools": TOOLS, "messages": [ask]}
    r = httpx.post(gateway.url + "/api/chat", json=body, timeout=30)
    assert r.status_code == 200, r.text
    lines = [json.loads(x) for x in r.text.splitlines()] if stream else [r.json()]
    calls = [tc for x in lines for tc in (x.get("message", {}).get("tool_calls") or [])]
    assert [c["function"]["index"] for c in calls] == [0, 1]  # one counter for the whole response
    assert [c["id"] for c in calls] == [
        "toolu_Paris",
        "toolu_Rome",
    ]  # the upstream's ids, so results map back
    assert [c["function"]["arguments"] for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    # answer in the other order: only the ids say which result belongs to which call of the same function
    answers = [
        {
            "role": "tool",
            "tool_name": "get_weather",
            "tool_call_id": c["id"],
            "content": _answer(c["function"]["arguments"]["city"]),
        }
        for c in reversed(calls)
    ]
    body["messages"] = [ask, {"role": "assistant", "content": "", "tool_calls": calls}, *answers]
    r = httpx.post(gateway.url + "/api/chat", json=body, timeout=30)
    assert r.status_code == 200, r.text
    lines = [json.loads(x) for x in r.text.splitlines()] if stream else [r.json()]
    assert "".join(x["message"]["content"] for x in lines) == "rain in Rome / sunny in Paris"


def test_ollama_upstream_ids_reach_an_openai_client_and_come_back(gateway):
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    ask = {"role": "user", "content": "Weather in Paris and Rome?"}
    calls: dict[int, dict[str, Any]] = {}
    for chunk in client.chat.completions.create(model="via-ollama", messages=[ask], tools=TOOLS, stream=True):
        for tc in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += tc.id or ""
            slot["name"] += tc.function.name or ""
            slot["arguments"] += tc.function.arguments or ""
    assert [c["id"] for c in calls.values()] == ["call_paris", "call_rome"]
    assert [json.loads(c["arguments"]) for c in calls.values()] == [{"city": "Paris"}, {"city": "Rome"}]
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls.values()
        ],
    }
    answers = [
        {
            "role": "tool",
            "tool_call_id": c["id"],
            "content": _answer(json.loads(c["arguments"])["city"]),
        }
        for c in reversed(list(calls.values()))
    ]
    done = client.chat.completions.create(
        model="via-ollama", messages=[ask, assistant, *answers], tools=TOOLS
    )
    assert done.choices[0].message.content == "rain in Rome / sunny in Paris"
