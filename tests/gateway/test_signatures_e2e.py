"""Signed reasoning survives tool loops through the gateway for clients whose protocol has no place for it.

A Gemini 3 model refuses a history whose function calls lost their thoughtSignature; an Anthropic model with
thinking on refuses a tool loop whose last assistant turn lost its signed thinking block (the fakes enforce
both with the real 400 texts, see tests/fakes/thinking_rules.py). Each official SDK runs a two-turn tool loop
the way its users write it — the model asks for two calls in one turn, the client answers both and sends its
own history back (which cannot hold the signed state) — streamed and not. The gateway must put the state back.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes.anthropic_upstream import AnthropicUpstream
from tests.fakes.gemini_upstream import GeminiUpstream
from tests.fakes.thinking_rules import GEMINI_BYPASS
from tests.gateway_server import GatewayServer

UP_KEYS = {"anthropic": "sk-up-ant-sig", "gemini": "up-gem-sig"}
KEY_A, KEY_B = "client-key-a", "client-key-b"
ASK = "What is the weather? PARALLEL"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
MODELS = {"g3": "gemini", "claude": "anthropic"}


def config(fakes: dict[str, Any], state: str | None = None) -> str:
    return (
        "providers:\n"
        f"  - {{name: up-anthropic, protocol: anthropic, base_url: {fakes['anthropic'].url},"
        f" accounts: [{{api_key: {UP_KEYS['anthropic']}}}]}}\n"
        f"  - {{name: up-gemini, protocol: gemini, base_url: {fakes['gemini'].url},"
        f" accounts: [{{api_key: {UP_KEYS['gemini']}}}]}}\n"
        "models:\n"
        "  - {name: claude, targets: [{provider: up-anthropic, model: claude-think-1}]}\n"
        "  - {name: g3, targets: [{provider: up-gemini, model: gemini-3-pro-preview}]}\n"
        f"keys: [{{key: {KEY_A}}}, {{key: {KEY_B}}}]\n"
        "retry: {attempts: 1, deadline: 20}\n" + (f"state: {state}\n" if state else "")
    )


@pytest.fixture(scope="module")
def fakes():
    f = {
        "anthropic": AnthropicUpstream(api_key=UP_KEYS["anthropic"]).start(),
        "gemini": GeminiUpstream(api_key=UP_KEYS["gemini"]).start(),
    }
    yield f
    for x in f.values():
        x.stop()


@pytest.fixture(scope="module")
def gw(fakes):
    with GatewayServer(config(fakes)) as g:
        yield g


def result_for(city: str) -> str:
    return f"{'sunny' if city == 'Paris' else 'rainy'} in {city}"


# ------------------------------------------------------------------------------------------ the SDK loops
# Each runs: ask → two calls → answer both → final text. `think` asks the client protocol's own reasoning
# switch (Anthropic upstreams only turn thinking on when asked; Gemini 3 signs its calls regardless).


def openai_loop(
    url: str, key: str, model: str, stream: bool, think: bool, history: list | None = None
) -> str:
    import openai

    sdk = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=20)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
    kw: dict[str, Any] = {"model": model, "tools": tools, **({"reasoning_effort": "high"} if think else {})}
    msgs: list[dict[str, Any]] = history if history is not None else [{"role": "user", "content": ASK}]

    def turn() -> tuple[str, list[dict[str, Any]]]:
        if not stream:
            m = sdk.chat.completions.create(messages=msgs, **kw).choices[0].message
            return m.content or "", [
                {
                    "id": t.id,
                    "type": "function",
                    "function": {"name": t.function.name, "arguments": t.function.arguments},
                }
                for t in m.tool_calls or []
            ]
        text, calls = "", {}
        for chunk in sdk.chat.completions.create(messages=msgs, stream=True, **kw):
            for ch in chunk.choices:
                text += ch.delta.content or ""
                for tc in ch.delta.tool_calls or []:
                    slot = calls.setdefault(
                        tc.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                    )
                    slot["id"] = tc.id or slot["id"]
                    slot["function"]["name"] += (tc.function.name or "") if tc.function else ""
                    slot["function"]["arguments"] += (tc.function.arguments or "") if tc.function else ""
        return text, [calls[i] for i in sorted(calls)]

    if history is None:
        text, calls = turn()
        assert len(calls) == 2, calls
        msgs.append({"role": "assistant", "content": text or None, "tool_calls": calls})
        msgs += [
            {
                "role": "tool",
                "tool_call_id": c["id"],
                "content": result_for(json.loads(c["function"]["arguments"])["city"]),
            }
            for c in calls
        ]
    return turn()[0]


def responses_loop(url: str, key: str, model: str, stream: bool, think: bool) -> str:
    """A Responses client that neither asks for `reasoning.encrypted_content` nor stores responses (as
    openai-agents and LangChain run by default): its reasoning items come back without the signed state."""
    import openai

    sdk = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=20)
    kw: dict[str, Any] = {
        "model": model,
        "store": False,
        "tools": [{"type": "function", "name": "get_weather", "parameters": SCHEMA, "strict": False}],
    }
    if think:
        kw["reasoning"] = {"effort": "high"}
    items: list[Any] = [{"role": "user", "content": ASK}]

    def turn() -> Any:
        if not stream:
            return sdk.responses.create(input=items, **kw)
        done = [
            e.response
            for e in sdk.responses.create(input=items, stream=True, **kw)
            if e.type == "response.completed"
        ]
        return done[0]

    first = turn()
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 2, first.output
    items += [o.model_dump(exclude_none=True) for o in first.output]
    items += [
        {
            "type": "function_call_output",
            "call_id": c.call_id,
            "output": result_for(json.loads(c.arguments)["city"]),
        }
        for c in calls
    ]
    return turn().output_text


def anthropic_loop(url: str, key: str, model: str, stream: bool, think: bool) -> str:
    import anthropic

    sdk = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=20)
    kw: dict[str, Any] = {
        "model": model,
        "max_tokens": 4096,
        "tools": [{"name": "get_weather", "input_schema": SCHEMA}],
    }
    if think:
        kw["thinking"] = {"type": "enabled", "budget_tokens": 2048}
    msgs: list[dict[str, Any]] = [{"role": "user", "content": ASK}]

    def turn() -> Any:
        if not stream:
            return sdk.messages.create(messages=msgs, **kw)
        with sdk.messages.stream(messages=msgs, **kw) as s:
            return s.get_final_message()

    first = turn()
    uses = [b for b in first.content if b.type == "tool_use"]
    assert len(uses) == 2, first.content
    msgs.append({"role": "assistant", "content": first.content})
    msgs.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": b.id, "content": result_for(b.input["city"])}
                for b in uses
            ],
        }
    )
    return "".join(b.text for b in turn().content if b.type == "text")


def gemini_loop(url: str, key: str, model: str, stream: bool, think: bool) -> str:
    from google import genai
    from google.genai import types as t

    sdk = genai.Client(api_key=key, http_options=t.HttpOptions(base_url=url))
    cfg = t.GenerateContentConfig(
        tools=[
            t.Tool(
                function_declarations=[
                    t.FunctionDeclaration(name="get_weather", parameters_json_schema=SCHEMA)
                ]
            )
        ],
        automatic_function_calling=t.AutomaticFunctionCallingConfig(disable=True),
        thinking_config=t.ThinkingConfig(thinking_budget=2048) if think else None,
    )
    contents: list[Any] = [t.Content(role="user", parts=[t.Part(text=ASK)])]

    def turn() -> list[Any]:
        chunks = (
            sdk.models.generate_content_stream(model=model, contents=contents, config=cfg)
            if stream
            else [sdk.models.generate_content(model=model, contents=contents, config=cfg)]
        )
        return [
            p
            for c in chunks
            if c.candidates and c.candidates[0].content
            for p in c.candidates[0].content.parts or []
        ]

    parts = turn()
    calls = [p.function_call for p in parts if p.function_call]
    assert len(calls) == 2, parts
    contents.append(t.Content(role="model", parts=parts))
    contents.append(
        t.Content(
            role="user",
            parts=[
                t.Part(
                    function_response=t.FunctionResponse(
                        id=fc.id, name=fc.name, response={"output": result_for(fc.args["city"])}
                    )
                )
                for fc in calls
            ],
        )
    )
    return "".join(p.text for p in turn() if p.text and not p.thought)


def ollama_loop(url: str, key: str, model: str, stream: bool, think: bool) -> str:
    import ollama

    sdk = ollama.Client(host=url, headers={"Authorization": f"Bearer {key}"}, timeout=20)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
    msgs: list[Any] = [{"role": "user", "content": ASK}]

    def turn() -> Any:
        if not stream:
            return sdk.chat(model=model, messages=msgs, tools=tools, think=think or None).message
        content, calls = "", []
        for part in sdk.chat(model=model, messages=msgs, tools=tools, think=think or None, stream=True):
            content += part.message.content or ""
            calls += part.message.tool_calls or []
        return ollama.Message(role="assistant", content=content, tool_calls=calls or None)

    first = turn()
    assert len(first.tool_calls or []) == 2, first
    msgs.append(first)  # the SDK's message, as its users append it (it keeps no call ids)
    msgs += [
        {"role": "tool", "tool_name": c.function.name, "content": result_for(c.function.arguments["city"])}
        for c in first.tool_calls
    ]
    return turn().content


LOOPS = {
    "openai": openai_loop,
    "responses": responses_loop,
    "anthropic": anthropic_loop,
    "gemini": gemini_loop,
    "ollama": ollama_loop,
}
# every client protocol × upstream whose state the client's protocol cannot carry; then the two clients that
# carry it themselves (the gateway must leave their own state as it is)
CASES = [
    ("openai", "g3"),
    ("openai", "claude"),
    ("responses", "g3"),
    ("responses", "claude"),
    ("anthropic", "g3"),
    ("gemini", "claude"),
    ("ollama", "g3"),
    ("ollama", "claude"),
    ("anthropic", "claude"),
    ("gemini", "g3"),
]


def generations(fake: Any, since: int) -> list[Any]:
    return [r for r in fake.requests[since:] if r.method == "POST" and "count" not in r.path.lower()]


def assert_restored(kind: str, body: dict[str, Any]) -> None:
    """The second turn reached the upstream with the first turn's own signed state (not a bypass)."""
    if kind == "gemini":
        model = [c for c in body["contents"] if c.get("role") == "model"][-1]
        calls = [p for p in model["parts"] if "functionCall" in p]
        assert len(calls) == 2
        assert calls[0].get("thoughtSignature") and calls[0]["thoughtSignature"] not in GEMINI_BYPASS
    else:
        assert body["thinking"]["type"] == "enabled"
        assistant = [m for m in body["messages"] if m["role"] == "assistant"][-1]
        assert assistant["content"][0]["type"] == "thinking" and assistant["content"][0]["signature"]
        assert [b["type"] for b in assistant["content"]].count("tool_use") == 2


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("client,model", CASES, ids=[f"{c}->{m}" for c, m in CASES])
def test_tool_loop_keeps_signed_reasoning(gw, fakes, client, model, stream):
    kind = MODELS[model]
    since = len(fakes[kind].requests)
    text = LOOPS[client](gw.url, KEY_A, model, stream, think=kind == "anthropic" or client == "gemini")
    assert text.startswith("The tool said:"), text
    reqs = generations(fakes[kind], since)
    assert len(reqs) == 2  # one per turn: nothing was refused and retried
    assert_restored(kind, reqs[1].json)


def test_another_clients_state_is_never_applied(gw, fakes):
    """Client B replaying client A's history (same call ids) gets none of A's state: toward Gemini 3 the
    documented bypass value instead, toward Anthropic thinking off for that turn — and both turns succeed."""
    for model, kind in MODELS.items():
        history: list[dict[str, Any]] = [{"role": "user", "content": ASK}]
        import openai

        sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY_A, max_retries=0, timeout=20)
        kw: dict[str, Any] = {"reasoning_effort": "high"} if kind == "anthropic" else {}
        m = (
            sdk.chat.completions.create(
                model=model,
                messages=history,
                tools=[{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}],
                **kw,
            )
            .choices[0]
            .message
        )
        history.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments},
                    }
                    for c in m.tool_calls
                ],
            }
        )
        history += [{"role": "tool", "tool_call_id": c.id, "content": "ok"} for c in m.tool_calls]
        since = len(fakes[kind].requests)
        assert openai_loop(gw.url, KEY_B, model, False, kind == "anthropic", history).startswith(
            "The tool said:"
        )
        body = generations(fakes[kind], since)[-1].json
        if kind == "gemini":
            first = next(
                p
                for c in body["contents"]
                if c.get("role") == "model"
                for p in c["parts"]
                if "functionCall" in p
            )
            assert first["thoughtSignature"] == "skip_thought_signature_validator"
        else:
            assert "thinking" not in body
            assert all(b["type"] != "thinking" for msg in body["messages"] for b in msg["content"])


def test_unknown_history_uses_the_bypass_only_for_gemini_3(gw, fakes):
    """A history the gateway never saw (another model's turn): Gemini 3 gets the bypass on the first call of
    the step only; an Anthropic request asking for thinking goes without it instead of being refused."""
    history = [
        {"role": "user", "content": "What is the weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_elsewhere_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_elsewhere_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_elsewhere_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_elsewhere_2", "content": "cloudy"},
    ]
    since = len(fakes["gemini"].requests)
    assert openai_loop(gw.url, KEY_A, "g3", True, False, [dict(m) for m in history]).startswith(
        "The tool said:"
    )
    model = next(
        c for c in generations(fakes["gemini"], since)[-1].json["contents"] if c.get("role") == "model"
    )
    sigs = [p.get("thoughtSignature") for p in model["parts"] if "functionCall" in p]
    assert sigs == ["skip_thought_signature_validator", None]
    since = len(fakes["anthropic"].requests)
    assert openai_loop(gw.url, KEY_A, "claude", True, True, [dict(m) for m in history]).startswith(
        "The tool said:"
    )
    assert "thinking" not in generations(fakes["anthropic"], since)[-1].json


def test_replicas_share_the_state_through_redis(fakes, tmp_path):
    """With `state: redis://…`, the second turn may land on another replica and still gets the state."""
    from tests.pool.conftest import RedisServer, _ensure_binary

    _ensure_binary()
    srv = RedisServer(tmp_path).start()
    try:
        with GatewayServer(config(fakes, srv.url)) as one, GatewayServer(config(fakes, srv.url)) as two:
            for model, kind in MODELS.items():
                import openai

                sdk = openai.OpenAI(base_url=one.url + "/v1", api_key=KEY_A, max_retries=0, timeout=20)
                kw: dict[str, Any] = {"reasoning_effort": "high"} if kind == "anthropic" else {}
                tools = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
                history: list[dict[str, Any]] = [{"role": "user", "content": ASK}]
                m = (
                    sdk.chat.completions.create(
                        model=model, messages=history, tools=tools, stream=False, **kw
                    )
                    .choices[0]
                    .message
                )
                history.append(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": c.id,
                                "type": "function",
                                "function": {"name": c.function.name, "arguments": c.function.arguments},
                            }
                            for c in m.tool_calls
                        ],
                    }
                )
                history += [{"role": "tool", "tool_call_id": c.id, "content": "ok"} for c in m.tool_calls]
                since = len(fakes[kind].requests)
                assert openai_loop(two.url, KEY_A, model, False, kind == "anthropic", history).startswith(
                    "The tool"
                )
                assert_restored(kind, generations(fakes[kind], since)[-1].json)
    finally:
        srv.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_clients_that_echo_extra_content_need_no_store(fakes, stream):
    """A Gemini call's signature also rides where Gemini's own OpenAI-compatible endpoint puts it
    (`tool_calls[].extra_content.google.thought_signature`): a client that keeps it gets its turn through on
    a replica that never saw the first turn, with no shared store."""
    import openai

    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
    with GatewayServer(config(fakes)) as one, GatewayServer(config(fakes)) as two:
        sdk = openai.OpenAI(base_url=one.url + "/v1", api_key=KEY_A, max_retries=0, timeout=20)
        msgs: list[dict[str, Any]] = [{"role": "user", "content": ASK}]
        if stream:
            calls: dict[int, dict[str, Any]] = {}
            for chunk in sdk.chat.completions.create(model="g3", messages=msgs, tools=tools, stream=True):
                for tc in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
                    slot = calls.setdefault(
                        tc.index,
                        {
                            "id": tc.id,
                            "type": "function",
                            "function": {"name": tc.function.name, "arguments": ""},
                        },
                    )
                    slot["function"]["arguments"] += tc.function.arguments or ""
                    if (tc.model_extra or {}).get("extra_content"):
                        slot["extra_content"] = tc.model_extra["extra_content"]
            msgs.append(
                {"role": "assistant", "content": None, "tool_calls": [calls[i] for i in sorted(calls)]}
            )
        else:
            m = sdk.chat.completions.create(model="g3", messages=msgs, tools=tools).choices[0].message
            msgs.append(m.model_dump(exclude_none=True))  # the SDK keeps fields it does not know
        sent = msgs[-1]["tool_calls"]
        assert sent[0]["extra_content"]["google"]["thought_signature"] and "extra_content" not in sent[1]
        msgs += [{"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in sent]
        since = len(fakes["gemini"].requests)
        assert openai_loop(two.url, KEY_A, "g3", stream, False, msgs).startswith("The tool said:")
        assert_restored("gemini", generations(fakes["gemini"], since)[-1].json)
