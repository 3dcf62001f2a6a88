"""OpenAI Responses (`POST /v1/responses`), both as served to clients and as an upstream (stateless).

Lossy:
- previous_response_id, conversation and item_reference need a response store: rejected with a 400.
- `store` is ignored (nothing is stored; responses always say store=false); `include`, `truncation`,
  `background`, `prompt`, `max_tool_calls` are ignored.
- instructions and system/developer messages are hoisted into Request.system (position lost).
- hosted tools (web_search, file_search, computer, mcp, custom …), input_file / file_id parts and
  non-function items are rejected (400); video has no Responses input part and is refused upstream.
- tool `strict` and `text.format.description` / `text.verbosity` are not carried canonically.
- `tool_choice` `allowed_tools` keeps only its mode; the allowed subset is dropped.
- reasoning items keep their summary text and encrypted_content (as Reasoning.redacted) but not their id:
  new `rs_` ids are minted; when calling an upstream, reasoning without encrypted_content is dropped (it
  could only be replayed by id from a store); a streamed upstream's encrypted_content is kept only when
  it arrives in `output_item.added`; Anthropic signatures have no Responses field.
- multiple summary parts of one reasoning item are joined with a blank line; assistant refusals are text.
- top_k is accepted from clients but never sent upstream; stop sequences and seed have no Responses
  field (not sent); a response is only completed or incomplete (max_output_tokens / content_filter), so
  end_turn and stop_sequence are indistinguishable on the way back in (tool_use is inferred from calls).
- ToolResult.is_error has no field; cache_creation_tokens has no usage field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..canonical import (
    Block,
    Image,
    Message,
    Reasoning,
    ReasoningConfig,
    Request,
    Response,
    ResponseFormat,
    StopReason,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Video,
    link_tool_results,
)
from ..errors import ErrorKind, GatewayError, invalid
from . import openai_common as oc
from .base import Codec, ErrorReply, RequestContext, StreamDecoder, StreamEncoder, UpstreamRequest
from .common import check, field, loads_body, new_id, now
from .openai_decoders import ResponsesStreamDecoder, responses_stop
from .openai_responses_stream import ResponsesStreamEncoder, output_items, response_object

_STATEFUL = ("previous_response_id", "conversation")


# ---------------------------------------------------------------- request decoding (client side)


def _parts(content: Any, name: str, role: str) -> list[Text | Image]:
    if isinstance(content, str):
        return [Text(text=content)]
    check(content, list, name)
    out: list[Text | Image] = []
    for j, part in enumerate(content):
        p = f"{name}[{j}]"
        check(part, dict, p)
        typ = field(part, "type", str, p, required=True)
        if typ in ("input_text", "output_text", "text"):
            out.append(Text(text=field(part, "text", str, p, required=True)))
        elif typ == "refusal":
            out.append(Text(text=field(part, "refusal", str, p, required=True)))
        elif typ == "input_image" and role != "assistant":
            url = field(part, "image_url", str, p)
            if url is None:
                raise invalid(f"'{p}.image_url' is required (file_id images are not supported)",
                              param=f"{p}.image_url")
            media = oc.media_from_url(url, f"{p}.image_url", field(part, "detail", str, p))
            assert isinstance(media, Image)
            out.append(media)
        else:
            raise invalid(f"content part type '{typ}' is not supported here", param=f"{p}.type")
    return out


def _append(messages: list[Message], role: str, blocks: list[Block], merge: bool) -> None:
    """Add blocks as a turn; `merge` joins them to the previous turn of the same role."""
    if merge and messages and messages[-1].role == role:
        messages[-1].content.extend(blocks)
    else:
        messages.append(Message(role=role, content=list(blocks)))  # type: ignore[arg-type]


def _items(raw: list[Any], system: list[Text]) -> list[Message]:
    messages: list[Message] = []
    for i, item in enumerate(raw):
        path = f"input[{i}]"
        check(item, dict, path)
        typ = field(item, "type", str, path, default="message")
        if typ == "message":
            role = field(item, "role", str, path, required=True)
            content = field(item, "content", (str, list), path, required=True)
            if role in ("system", "developer"):
                system.extend(b for b in _parts(content, f"{path}.content", role) if isinstance(b, Text))
            elif role in ("user", "assistant"):
                blocks = _parts(content, f"{path}.content", role)
                # assistant text after reasoning / before calls of the same turn stays one canonical turn
                _append(messages, role, blocks, merge=role == "assistant")  # type: ignore[arg-type]
            else:
                raise invalid(f"unknown role '{role}'", param=f"{path}.role")
        elif typ == "function_call":
            args = item.get("arguments", "{}")
            check(args, str, f"{path}.arguments")
            call = ToolCall(id=field(item, "call_id", str, path, required=True),
                            name=field(item, "name", str, path, required=True), arguments=args or "{}")
            _append(messages, "assistant", [call], merge=True)
        elif typ == "function_call_output":
            output = item.get("output")
            if output is None:
                raise invalid(f"missing required field '{path}.output'", param=f"{path}.output")
            check(output, (str, list), f"{path}.output")
            result = ToolResult(call_id=field(item, "call_id", str, path, required=True),
                                content=_parts(output, f"{path}.output", "user"))
            prev = messages[-1] if messages else None
            merge = prev is not None and prev.role == "user" and all(isinstance(b, ToolResult) for b in prev.content)
            _append(messages, "user", [result], merge=merge)
        elif typ == "reasoning":
            texts = []
            for k, s in enumerate(field(item, "summary", list, path, default=[])):
                check(s, dict, f"{path}.summary[{k}]")
                texts.append(field(s, "text", str, f"{path}.summary[{k}]", required=True))
            if not texts:
                for k, c in enumerate(field(item, "content", list, path, default=[])):
                    check(c, dict, f"{path}.content[{k}]")
                    texts.append(field(c, "text", str, f"{path}.content[{k}]", default=""))
            block = Reasoning(text="\n\n".join(texts), redacted=field(item, "encrypted_content", str, path))
            if block.text or block.redacted:  # an empty reasoning echo carries nothing
                _append(messages, "assistant", [block], merge=True)
        elif typ == "item_reference":
            raise invalid("item_reference needs stored responses, which this gateway does not keep; "
                          "send the full conversation instead", param=f"{path}.type")
        else:
            raise invalid(f"input item type '{typ}' is not supported", param=f"{path}.type")
    return messages


def _tools(raw: list[Any]) -> list[Tool]:
    tools = []
    for i, t in enumerate(raw):
        path = f"tools[{i}]"
        check(t, dict, path)
        typ = field(t, "type", str, path, required=True)
        if typ != "function":
            raise invalid(f"tool type '{typ}' is not supported", param=f"{path}.type")
        params = field(t, "parameters", dict, path)
        tools.append(Tool(name=field(t, "name", str, path, required=True),
                          description=field(t, "description", str, path),
                          **({"parameters": params} if params is not None else {})))
    return tools


def _tool_choice(tc: Any, parallel: bool | None) -> ToolChoice | None:
    if tc is None:
        return ToolChoice(parallel=parallel) if parallel is not None else None
    if isinstance(tc, str):
        if tc not in ("auto", "none", "required"):
            raise invalid("'tool_choice' must be auto, none, required or an object", param="tool_choice")
        return ToolChoice(mode=tc, parallel=parallel)  # type: ignore[arg-type]  # checked above
    check(tc, dict, "tool_choice")
    typ = field(tc, "type", str, "tool_choice", required=True)
    if typ == "function":
        return ToolChoice(mode="tool", name=field(tc, "name", str, "tool_choice", required=True), parallel=parallel)
    if typ == "allowed_tools":
        mode = field(tc, "mode", str, "tool_choice", default="auto")
        return ToolChoice(mode="required" if mode == "required" else "auto", parallel=parallel)
    raise invalid(f"tool_choice type '{typ}' is not supported", param="tool_choice.type")


def _format(text: Any) -> ResponseFormat | None:
    if text is None:
        return None
    check(text, dict, "text")
    fmt = field(text, "format", dict, "text")
    if fmt is None:
        return None
    p = "text.format"
    typ = field(fmt, "type", str, p, required=True)
    if typ == "text":
        return None
    if typ == "json_object":
        return ResponseFormat(type="json_object")
    if typ == "json_schema":
        return ResponseFormat(type="json_schema", name=field(fmt, "name", str, p, required=True),
                              schema=field(fmt, "schema", dict, p), strict=field(fmt, "strict", bool, p))
    raise invalid(f"text.format type '{typ}' is not supported", param=f"{p}.type")


def _reasoning(r: Any) -> ReasoningConfig | None:
    if r is None:
        return None
    check(r, dict, "reasoning")
    effort = field(r, "effort", str, "reasoning")
    summary = field(r, "summary", str, "reasoning") or field(r, "generate_summary", str, "reasoning")
    cfg = oc.reasoning_from_effort(effort) if effort is not None else ReasoningConfig()
    if summary is not None:
        cfg.include_thoughts = summary != "none"
    return cfg


def decode_request(body: bytes) -> Request:
    d = loads_body(body)
    for key in _STATEFUL:
        if d.get(key) is not None:
            raise invalid(f"'{key}' needs stored responses, which this gateway does not keep; "
                          "send the full conversation in 'input' instead", param=key)
    model = field(d, "model", str, required=True)
    system: list[Text] = []
    instructions = field(d, "instructions", str)
    if instructions:
        system.append(Text(text=instructions))
    raw = field(d, "input", (str, list), required=True)
    messages = [Message(role="user", content=[Text(text=raw)])] if isinstance(raw, str) else _items(raw, system)
    req = Request(
        model=model, messages=messages, system=system, tools=_tools(field(d, "tools", list, default=[])),
        tool_choice=_tool_choice(d.get("tool_choice"), field(d, "parallel_tool_calls", bool)),
        response_format=_format(d.get("text")), max_tokens=field(d, "max_output_tokens", int),
        temperature=oc.opt_number(d, "temperature"), top_p=oc.opt_number(d, "top_p"),
        top_k=field(d, "top_k", int), stream=bool(field(d, "stream", bool, default=False)),
        reasoning=_reasoning(d.get("reasoning")), metadata=field(d, "metadata", dict, default={}))
    link_tool_results(req.messages)
    return req


# ---------------------------------------------------------------- upstream side


def _input_parts(blocks: list[Any], role: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for b in blocks:
        if isinstance(b, Text):
            parts.append({"type": "output_text" if role == "assistant" else "input_text", "text": b.text,
                          **({"annotations": []} if role == "assistant" else {})})
        elif isinstance(b, Image):
            parts.append({"type": "input_image", "image_url": oc.media_url(b), "detail": b.detail or "auto"})
        elif isinstance(b, Video):
            raise invalid("this upstream (OpenAI Responses) cannot take video input")
    return parts


def _flush(items: list[dict[str, Any]], role: str, pending: list[Block]) -> None:
    if pending:
        items.append({"type": "message", "role": role, "content": _input_parts(pending, role)})
        pending.clear()


def _input_items(messages: list[Message]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for msg in messages:
        pending: list[Block] = []
        for b in msg.content:
            if isinstance(b, ToolResult):
                _flush(items, msg.role, pending)
                images = [c for c in b.content if isinstance(c, Image)]
                texts = "\n".join(c.text for c in b.content if isinstance(c, Text))
                items.append({"type": "function_call_output", "call_id": b.call_id,
                              "output": _input_parts(b.content, "user") if images else texts})
            elif isinstance(b, ToolCall):
                _flush(items, msg.role, pending)
                items.append({"type": "function_call", "call_id": b.id, "name": b.name, "arguments": b.arguments})
            elif isinstance(b, Reasoning):
                _flush(items, msg.role, pending)
                if b.redacted:  # only encrypted reasoning can be replayed without a store
                    items.append({"type": "reasoning", "id": new_id("rs_"), "encrypted_content": b.redacted,
                                  "summary": [{"type": "summary_text", "text": b.text}] if b.text else []})
            else:
                pending.append(b)
        _flush(items, msg.role, pending)
    return items


def encode_request(req: Request, upstream_model: str) -> UpstreamRequest:
    body: dict[str, Any] = {"model": upstream_model, "input": _input_items(req.messages), "store": False}
    if req.system:
        body["instructions"] = req.system_text
    if req.tools:
        body["tools"] = [{"type": "function", "name": t.name, "parameters": t.parameters, "strict": False,
                          **({"description": t.description} if t.description else {})} for t in req.tools]
        tc = req.tool_choice
        if tc is not None:
            body["tool_choice"] = {"type": "function", "name": tc.name} if tc.mode == "tool" else tc.mode
            if tc.parallel is not None:
                body["parallel_tool_calls"] = tc.parallel
    rf = req.response_format
    if rf is not None and rf.type != "text":
        fmt: dict[str, Any] = {"type": rf.type}
        if rf.type == "json_schema":
            fmt.update(name=rf.name or "response", schema=rf.schema or {})
            if rf.strict is not None:
                fmt["strict"] = rf.strict
        body["text"] = {"format": fmt}
    for key, value in (("max_output_tokens", req.max_tokens), ("temperature", req.temperature),
                       ("top_p", req.top_p)):
        if value is not None:
            body[key] = value
    effort = oc.effort_for(req.reasoning)
    if effort is not None:
        body["reasoning"] = {"effort": effort, **({"summary": "auto"} if req.reasoning and
                                                  req.reasoning.include_thoughts else {})}
        body["include"] = ["reasoning.encrypted_content"]
    if req.stream:
        body["stream"] = True
    return UpstreamRequest(path="/responses", body=orjson.dumps(body), stream=req.stream,
                           headers={"content-type": "application/json"})


def _output_blocks(output: list[Any]) -> list[Block]:
    blocks: list[Block] = []
    for item in output:
        typ = item.get("type")
        if typ == "message":
            for part in item.get("content") or ():
                text = part.get("text") if part.get("type") == "output_text" else part.get("refusal")
                if isinstance(text, str) and text:
                    blocks.append(Text(text=text))
        elif typ == "function_call":
            args = item.get("arguments")
            blocks.append(ToolCall(id=str(item.get("call_id") or item.get("id") or new_id("call_")),
                                   name=str(item.get("name") or ""),
                                   arguments=args if isinstance(args, str) and args else "{}"))
        elif typ == "reasoning":
            parts = item.get("summary") or item.get("content") or []
            enc = item.get("encrypted_content")
            blocks.append(Reasoning(text="\n\n".join(str(p.get("text", "")) for p in parts),
                                    redacted=enc if isinstance(enc, str) and enc else None))
    return blocks


def decode_response(body: bytes) -> Response:
    try:
        d = orjson.loads(body)
        if d.get("status") == "failed" or (d.get("error") and not d.get("output")):
            err = d.get("error")
            raise GatewayError(ErrorKind(oc.kind_from_error(err)), oc.error_message(err, "upstream response failed"))
        blocks = _output_blocks(d.get("output") or [])
        created = d.get("created_at")
        return Response(id=str(d.get("id") or new_id("resp_")), model=str(d.get("model") or ""), content=blocks,
                        stop_reason=responses_stop(d, any(isinstance(b, ToolCall) for b in blocks)),
                        usage=oc.usage_from_responses(d.get("usage")),
                        created=int(created) if isinstance(created, (int, float)) else now())
    except GatewayError:
        raise
    except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        raise oc.upstream_bad(f"{type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- the codec


class OpenAIResponsesCodec(Codec):
    name = "openai-responses"
    supports_stop = False  # the Responses API has no stop parameter: the gateway enforces them

    def decode_request(self, body: bytes, ctx: RequestContext) -> Request:
        return decode_request(body)

    def encode_response(self, resp: Response, req: Request) -> bytes:
        status = "incomplete" if resp.stop_reason in (StopReason.MAX_TOKENS, StopReason.CONTENT_FILTER) \
            else "completed"
        return orjson.dumps(response_object(req, resp.id, resp.model, resp.created, status,
                                            output_items(resp.content), resp.usage, resp.stop_reason))

    def stream_encoder(self, req: Request) -> StreamEncoder:
        return ResponsesStreamEncoder(req)

    def encode_error(self, err: GatewayError) -> ErrorReply:
        return oc.encode_error(err)

    def encode_request(self, req: Request, upstream_model: str) -> UpstreamRequest:
        return encode_request(req, upstream_model)

    def decode_response(self, body: bytes) -> Response:
        return decode_response(body)

    def stream_decoder(self) -> StreamDecoder:
        return ResponsesStreamDecoder()

    def decode_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return oc.decode_error(status, body, headers)
