"""One conversation spec, five official SDKs.

Each adapter turns an `Ask` into its SDK's native call (streaming or not) and reads the answer back into
a `Result`, so the matrix test can assert the same behaviour for every client × upstream pair.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@dataclass
class ToolExchange:
    call_id: str
    name: str
    args: dict
    result: str


@dataclass
class Ask:
    turns: list[tuple[str, str]]  # (user|assistant, text); the last is the user's question
    system: str | None = None
    image: bytes | None = None  # PNG attached to the last user turn
    tools: bool = False
    exchange: ToolExchange | None = None  # an assistant tool call + its result, after `turns`
    max_tokens: int | None = None
    stop: list[str] | None = None
    stream: bool = False


@dataclass
class Result:
    text: str = ""
    tool_calls: list[tuple[str, str, dict]] = field(default_factory=list)  # (id, name, args)
    stop: str = ""  # normalised: end | length | stop_sequence | tool
    input_tokens: int = 0
    output_tokens: int = 0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------------------------------------- OpenAI


class OpenAIChatClient:
    name = "openai"
    reports_stop_sequence = False  # a stop sequence ends with finish_reason "stop"

    def __init__(self, base_url: str) -> None:
        import openai

        self.sdk = openai.OpenAI(base_url=base_url + "/v1", api_key="client-key", max_retries=0, timeout=30)

    def ask(self, model: str, a: Ask) -> Result:
        msgs: list[dict[str, Any]] = [{"role": "system", "content": a.system}] if a.system else []
        for i, (role, text) in enumerate(a.turns):
            if i == len(a.turns) - 1 and a.image is not None:
                msgs.append(
                    {
                        "role": role,
                        "content": [
                            {"type": "text", "text": text},
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64," + _b64(a.image)},
                            },
                        ],
                    }
                )
            else:
                msgs.append({"role": role, "content": text})
        if a.exchange:
            x = a.exchange
            msgs.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": x.call_id,
                            "type": "function",
                            "function": {"name": x.name, "arguments": json.dumps(x.args)},
                        }
                    ],
                }
            )
            msgs.append({"role": "tool", "tool_call_id": x.call_id, "content": x.result})
        kw: dict[str, Any] = {"model": model, "messages": msgs}
        if a.tools:
            kw["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Weather in a city",
                        "parameters": WEATHER_SCHEMA,
                    },
                }
            ]
        if a.max_tokens:
            kw["max_completion_tokens"] = a.max_tokens
        if a.stop:
            kw["stop"] = a.stop
        r = Result()
        if not a.stream:
            c = self.sdk.chat.completions.create(**kw)
            m = c.choices[0].message
            r.text = m.content or ""
            r.tool_calls = [
                (t.id, t.function.name, json.loads(t.function.arguments)) for t in (m.tool_calls or [])
            ]
            finish = c.choices[0].finish_reason
            r.input_tokens, r.output_tokens = c.usage.prompt_tokens, c.usage.completion_tokens
        else:
            calls: dict[int, list[str]] = {}
            finish = None
            for chunk in self.sdk.chat.completions.create(
                **kw, stream=True, stream_options={"include_usage": True}
            ):
                if chunk.usage:
                    r.input_tokens, r.output_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                for ch in chunk.choices:
                    r.text += ch.delta.content or ""
                    for tc in ch.delta.tool_calls or []:
                        slot = calls.setdefault(tc.index, ["", "", ""])
                        slot[0] = tc.id or slot[0]
                        slot[1] = (tc.function.name if tc.function and tc.function.name else "") or slot[1]
                        slot[2] += (tc.function.arguments or "") if tc.function else ""
                    finish = ch.finish_reason or finish
            r.tool_calls = [(i, n, json.loads(args)) for i, n, args in calls.values()]
        r.stop = {"stop": "end", "length": "length", "tool_calls": "tool"}.get(finish or "", finish or "")
        return r


class OpenAIResponsesClient:
    name = "openai-responses"
    reports_stop_sequence = False
    takes_stop = False  # the Responses API has no stop parameter

    def __init__(self, base_url: str) -> None:
        import openai

        self.sdk = openai.OpenAI(base_url=base_url + "/v1", api_key="client-key", max_retries=0, timeout=30)

    def ask(self, model: str, a: Ask) -> Result:
        items: list[dict[str, Any]] = []
        for i, (role, text) in enumerate(a.turns):
            if role == "user":
                parts: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
                if i == len(a.turns) - 1 and a.image is not None:
                    parts.append(
                        {
                            "type": "input_image",
                            "detail": "auto",
                            "image_url": "data:image/png;base64," + _b64(a.image),
                        }
                    )
                items.append({"role": "user", "content": parts})
            else:
                items.append({"role": "assistant", "content": text})
        if a.exchange:
            x = a.exchange
            items.append(
                {
                    "type": "function_call",
                    "call_id": x.call_id,
                    "name": x.name,
                    "arguments": json.dumps(x.args),
                }
            )
            items.append({"type": "function_call_output", "call_id": x.call_id, "output": x.result})
        kw: dict[str, Any] = {"model": model, "input": items}
        if a.system:
            kw["instructions"] = a.system
        if a.tools:
            kw["tools"] = [
                {
                    "type": "function",
                    "name": "get_weather",
                    "description": "Weather in a city",
                    "parameters": WEATHER_SCHEMA,
                    "strict": False,
                }
            ]
        if a.max_tokens:
            kw["max_output_tokens"] = a.max_tokens
        if a.stream:
            resp = None
            deltas = ""
            for ev in self.sdk.responses.create(**kw, stream=True):
                if ev.type == "response.output_text.delta":
                    deltas += ev.delta
                if ev.type in ("response.completed", "response.incomplete"):
                    resp = ev.response
                if ev.type in ("response.failed", "error"):
                    raise RuntimeError(f"stream failed: {ev}")
            assert resp is not None, "no terminal event"
            assert deltas == resp.output_text
        else:
            resp = self.sdk.responses.create(**kw)
        r = Result(text=resp.output_text)
        r.tool_calls = [
            (o.call_id, o.name, json.loads(o.arguments)) for o in resp.output if o.type == "function_call"
        ]
        if resp.status == "incomplete":
            r.stop = (
                "length"
                if resp.incomplete_details and resp.incomplete_details.reason == "max_output_tokens"
                else "other"
            )
        else:
            r.stop = "tool" if r.tool_calls else "end"
        r.input_tokens, r.output_tokens = resp.usage.input_tokens, resp.usage.output_tokens
        return r


# ---------------------------------------------------------------------------------------------- Anthropic


class AnthropicClient:
    name = "anthropic"
    reports_stop_sequence = True

    def __init__(self, base_url: str, legacy_version: bool = False) -> None:
        import anthropic

        headers = {"anthropic-version": "2023-06-01"} if legacy_version else None
        self.sdk = anthropic.Anthropic(
            base_url=base_url, api_key="client-key", max_retries=0, timeout=30, default_headers=headers
        )

    @staticmethod
    def request(model: str, a: Ask) -> dict[str, Any]:
        msgs: list[dict[str, Any]] = []
        for i, (role, text) in enumerate(a.turns):
            if i == len(a.turns) - 1 and a.image is not None:
                msgs.append(
                    {
                        "role": role,
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": _b64(a.image),
                                },
                            },
                            {"type": "text", "text": text},
                        ],
                    }
                )
            else:
                msgs.append({"role": role, "content": text})
        if a.exchange:
            x = a.exchange
            msgs.append(
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": x.call_id, "name": x.name, "input": x.args}],
                }
            )
            msgs.append(
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": x.call_id, "content": x.result}],
                }
            )
        kw: dict[str, Any] = {"model": model, "messages": msgs, "max_tokens": a.max_tokens or 1024}
        if a.system:
            kw["system"] = a.system
        if a.tools:
            kw["tools"] = [
                {"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_SCHEMA}
            ]
        if a.stop:
            kw["stop_sequences"] = a.stop
        return kw

    @staticmethod
    def result(msg: Any) -> Result:
        r = Result()
        for b in msg.content:
            if b.type == "text":
                r.text += b.text
            elif b.type == "tool_use":
                r.tool_calls.append((b.id, b.name, dict(b.input)))
        r.stop = {
            "end_turn": "end",
            "max_tokens": "length",
            "stop_sequence": "stop_sequence",
            "tool_use": "tool",
        }.get(msg.stop_reason, msg.stop_reason)
        r.input_tokens, r.output_tokens = msg.usage.input_tokens, msg.usage.output_tokens
        return r

    def ask(self, model: str, a: Ask) -> Result:
        kw = self.request(model, a)
        if not a.stream:
            return self.result(self.sdk.messages.create(**kw))
        with self.sdk.messages.stream(**kw) as s:
            return self.result(s.get_final_message())


# ---------------------------------------------------------------------------------------------- Gemini


class GeminiClient:
    name = "gemini"
    reports_stop_sequence = False  # STOP

    def __init__(self, base_url: str, api_version: str | None = None) -> None:
        from google import genai
        from google.genai import types

        opts = (
            types.HttpOptions(base_url=base_url, api_version=api_version)
            if api_version
            else types.HttpOptions(base_url=base_url)
        )
        self.types = types
        self.sdk = genai.Client(api_key="client-key", http_options=opts)

    def ask(self, model: str, a: Ask) -> Result:
        t = self.types
        contents = []
        for i, (role, text) in enumerate(a.turns):
            parts = [t.Part(text=text)]
            if i == len(a.turns) - 1 and a.image is not None:
                parts.append(t.Part.from_bytes(data=a.image, mime_type="image/png"))
            contents.append(t.Content(role="user" if role == "user" else "model", parts=parts))
        if a.exchange:
            x = a.exchange
            contents.append(
                t.Content(
                    role="model",
                    parts=[t.Part(function_call=t.FunctionCall(name=x.name, args=x.args, id=x.call_id))],
                )
            )
            contents.append(
                t.Content(
                    role="user",
                    parts=[
                        t.Part(
                            function_response=t.FunctionResponse(
                                name=x.name, id=x.call_id, response={"result": x.result}
                            )
                        )
                    ],
                )
            )
        cfg: dict[str, Any] = {"automatic_function_calling": t.AutomaticFunctionCallingConfig(disable=True)}
        if a.system:
            cfg["system_instruction"] = a.system
        if a.max_tokens:
            cfg["max_output_tokens"] = a.max_tokens
        if a.stop:
            cfg["stop_sequences"] = a.stop
        if a.tools:
            cfg["tools"] = [
                t.Tool(
                    function_declarations=[
                        t.FunctionDeclaration(
                            name="get_weather",
                            description="Weather in a city",
                            parameters_json_schema=WEATHER_SCHEMA,
                        )
                    ]
                )
            ]
        config = t.GenerateContentConfig(**cfg)
        r = Result()
        finish = None
        chunks = (
            self.sdk.models.generate_content_stream(model=model, contents=contents, config=config)
            if a.stream
            else [self.sdk.models.generate_content(model=model, contents=contents, config=config)]
        )
        for c in chunks:
            cand = c.candidates[0] if c.candidates else None
            if cand and cand.content and cand.content.parts:
                for p in cand.content.parts:
                    if p.text and not p.thought:
                        r.text += p.text
                    if p.function_call:
                        r.tool_calls.append(
                            (p.function_call.id or "", p.function_call.name, dict(p.function_call.args or {}))
                        )
            if cand and cand.finish_reason:
                finish = (
                    cand.finish_reason.value
                    if hasattr(cand.finish_reason, "value")
                    else str(cand.finish_reason)
                )
            if c.usage_metadata and c.usage_metadata.candidates_token_count is not None:
                r.input_tokens = c.usage_metadata.prompt_token_count or 0
                r.output_tokens = c.usage_metadata.candidates_token_count or 0
        r.stop = (
            "tool"
            if r.tool_calls
            else {"STOP": "end", "MAX_TOKENS": "length"}.get(finish or "", finish or "")
        )
        return r


# ---------------------------------------------------------------------------------------------- Ollama


class OllamaClient:
    name = "ollama"
    reports_stop_sequence = False  # done_reason "stop"

    def __init__(self, base_url: str) -> None:
        import ollama

        self.sdk = ollama.Client(host=base_url, timeout=30)

    def ask(self, model: str, a: Ask) -> Result:
        msgs: list[dict[str, Any]] = [{"role": "system", "content": a.system}] if a.system else []
        for i, (role, text) in enumerate(a.turns):
            m: dict[str, Any] = {"role": role, "content": text}
            if i == len(a.turns) - 1 and a.image is not None:
                m["images"] = [_b64(a.image)]
            msgs.append(m)
        if a.exchange:
            x = a.exchange
            msgs.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": x.name, "arguments": x.args}}],
                }
            )
            msgs.append({"role": "tool", "content": x.result, "tool_name": x.name})
        options: dict[str, Any] = {}
        if a.max_tokens:
            options["num_predict"] = a.max_tokens
        if a.stop:
            options["stop"] = a.stop
        kw: dict[str, Any] = {
            "model": model,
            "messages": msgs,
            "options": options or None,
            "stream": a.stream,
        }
        if a.tools:
            kw["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Weather in a city",
                        "parameters": WEATHER_SCHEMA,
                    },
                }
            ]
        r = Result()
        parts = self.sdk.chat(**kw) if a.stream else [self.sdk.chat(**kw)]
        done_reason = None
        for p in parts:
            r.text += p.message.content or ""
            for tc in p.message.tool_calls or []:
                r.tool_calls.append(("", tc.function.name, dict(tc.function.arguments)))
            if p.done:
                done_reason = p.done_reason
                r.input_tokens, r.output_tokens = p.prompt_eval_count or 0, p.eval_count or 0
        r.stop = (
            "tool"
            if r.tool_calls
            else {"stop": "end", "length": "length"}.get(done_reason or "", done_reason or "")
        )
        return r


CLIENTS = [OpenAIChatClient, OpenAIResponsesClient, AnthropicClient, GeminiClient, OllamaClient]
