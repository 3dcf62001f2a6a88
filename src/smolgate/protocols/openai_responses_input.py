"""OpenAI Responses client requests → canonical `Request` (the client side of openai_responses.py).

Every tool type the API defines is accepted: functions; `namespace` groups and `custom` (free-form) tools
become canonical functions (tool_kinds.py); hosted tools (web_search, file_search, mcp, …) ride raw in
`Request.extras.responses` to Responses upstreams only. Output items of hosted tools sent back as input
(`web_search_call`, `mcp_call`, `compaction`, …) stay in place as `Opaque` blocks. Reasoning items whose
`encrypted_content` smolgate packed (reasoning_blob.py) are restored to the provider's signed form.
State (`previous_response_id`, `item_reference`) is resolved before this module runs (responses_api.py).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from .. import tool_kinds as tk
from ..canonical import (
    Block,
    Extras,
    Image,
    Message,
    Opaque,
    Reasoning,
    ReasoningConfig,
    Request,
    ResponseFormat,
    ResponsesClient,
    ResponsesExtras,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    link_tool_results,
)
from ..errors import invalid
from . import openai_common as oc
from . import reasoning_blob
from .common import check, field

PROTOCOL = "openai-responses"
# Parameters that only mean something to a Responses upstream: passed through to one, dropped for others.
PASSTHROUGH = (
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "service_tier",
    "truncation",
    "max_tool_calls",
    "user",
    "top_logprobs",
)
_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
# Output items of hosted / client-executed tools (and compaction) a client may send back: kept in place.
_ASSISTANT_ITEMS = frozenset(
    {
        "web_search_call",
        "file_search_call",
        "computer_call",
        "image_generation_call",
        "code_interpreter_call",
        "local_shell_call",
        "shell_call",
        "apply_patch_call",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_call",
        "tool_search_call",
        "compaction",
        "program",
    }
)
_USER_ITEMS = frozenset(
    {
        "computer_call_output",
        "local_shell_call_output",
        "shell_call_output",
        "apply_patch_call_output",
        "mcp_approval_response",
        "tool_search_output",
        "program_output",
        "additional_tools",
        "configuration_update",
        "compaction_trigger",
    }
)


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
                raise invalid(
                    f"'{p}.image_url' is required (file_id images are not supported)", param=f"{p}.image_url"
                )
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


def _result(messages: list[Message], result: ToolResult) -> None:
    prev = messages[-1] if messages else None
    merge = prev is not None and prev.role == "user" and all(isinstance(b, ToolResult) for b in prev.content)
    _append(messages, "user", [result], merge=merge)


def _output(item: dict[str, Any], path: str) -> list[Text | Image]:
    output = item.get("output")
    if output is None:
        raise invalid(f"missing required field '{path}.output'", param=f"{path}.output")
    check(output, (str, list), f"{path}.output")
    return _parts(output, f"{path}.output", "user")


def _reasoning_item(item: dict[str, Any], path: str, call_sigs: dict[str, str]) -> Reasoning | None:
    texts = []
    for k, s in enumerate(field(item, "summary", list, path, default=[])):
        check(s, dict, f"{path}.summary[{k}]")
        texts.append(field(s, "text", str, f"{path}.summary[{k}]", required=True))
    if not texts:
        for k, c in enumerate(field(item, "content", list, path, default=[])):
            check(c, dict, f"{path}.content[{k}]")
            texts.append(field(c, "text", str, f"{path}.content[{k}]", default=""))
    enc = field(item, "encrypted_content", str, path)
    packed = reasoning_blob.unpack(enc, f"{path}.encrypted_content") if enc else None
    if packed is not None:
        call_sigs.update(packed[1])
        block = packed[0]
        return block if block.text or block.signature or block.redacted else None
    block = Reasoning(text="\n\n".join(texts), redacted=enc)
    return block if block.text or block.redacted else None  # an empty reasoning echo carries nothing


def items(raw: list[Any], system: list[Text]) -> list[Message]:
    messages: list[Message] = []
    call_sigs: dict[str, str] = {}  # Gemini thoughtSignatures unpacked from reasoning items, by call id
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
        elif typ in ("function_call", "custom_tool_call"):
            name = tk.flat_name(
                field(item, "namespace", str, path), field(item, "name", str, path, required=True)
            )
            cid = field(item, "call_id", str, path, required=True)
            if typ == "custom_tool_call":
                args = tk.custom_args(field(item, "input", str, path, default=""))
            else:
                args = field(item, "arguments", str, path, default="") or "{}"
            call = ToolCall(id=cid, name=name, arguments=args, signature=call_sigs.get(cid))
            _append(messages, "assistant", [call], merge=True)
        elif typ in ("function_call_output", "custom_tool_call_output"):
            _result(
                messages,
                ToolResult(
                    call_id=field(item, "call_id", str, path, required=True), content=_output(item, path)
                ),
            )
        elif typ == "reasoning":
            block = _reasoning_item(item, path, call_sigs)
            if block is not None:
                _append(messages, "assistant", [block], merge=True)
        elif typ == "item_reference":
            raise invalid(
                "item_reference names an item this gateway has not stored (send the item itself, or "
                "use store: true)",
                param=f"{path}.id",
            )
        elif typ in _ASSISTANT_ITEMS or typ in _USER_ITEMS:
            role = "assistant" if typ in _ASSISTANT_ITEMS else "user"
            _append(messages, role, [Opaque(protocol=PROTOCOL, data=item)], merge=True)
        else:
            raise invalid(f"input item type '{typ}' is not supported", param=f"{path}.type")
    if call_sigs:  # signatures packed before the calls they belong to: attach to calls decoded earlier too
        for msg in messages:
            for k, b in enumerate(msg.content):
                if isinstance(b, ToolCall) and b.signature is None and b.id in call_sigs:
                    msg.content[k] = msgspec.structs.replace(b, signature=call_sigs[b.id])
    return messages


def _custom_description(t: dict[str, Any], path: str) -> str | None:
    desc: str | None = field(t, "description", str, path)
    fmt = field(t, "format", dict, path)
    if fmt is None or fmt.get("type") in (None, "text"):
        return desc
    definition, syntax = fmt.get("definition"), fmt.get("syntax")
    if not isinstance(definition, str) or not isinstance(syntax, str):
        raise invalid(f"'{path}.format' needs a string 'syntax' and 'definition'", param=f"{path}.format")
    rule = f"The input must match this {syntax} grammar:\n{definition}"
    return f"{desc}\n\n{rule}" if desc else rule


def _tool(t: dict[str, Any], path: str, namespace: str | None) -> Tool:
    typ = field(t, "type", str, path, required=True)
    if typ not in ("function", "custom"):
        raise invalid(f"tool type '{typ[:64]}' is not allowed in a namespace", param=f"{path}.type")
    local = field(t, "name", str, path, required=True)
    name = tk.flat_name(namespace, local)
    ns = {"namespace": namespace, "local_name": local} if namespace else {}
    if typ == "function":
        params = field(t, "parameters", dict, path)
        raw = {k: v for k, v in t.items() if k not in ("type", "name", "description", "parameters")} or None
        return Tool(
            name=name,
            description=field(t, "description", str, path),
            raw=raw,
            **ns,
            **({"parameters": params} if params is not None else {}),
        )
    return Tool(
        name=name,
        description=_custom_description(t, path),
        parameters=tk.CUSTOM_PARAMETERS,
        kind="custom",
        raw={k: v for k, v in t.items() if k not in ("type", "name")} or None,
        **ns,
    )


def tools(raw: list[Any], rx: ResponsesExtras) -> list[Tool]:
    out: list[Tool] = []
    hosted: list[dict[str, Any]] = []
    namespaces: dict[str, str] = {}
    for i, t in enumerate(raw):
        path = f"tools[{i}]"
        check(t, dict, path)
        typ = field(t, "type", str, path, required=True)
        if typ in ("function", "custom"):
            out.append(_tool(t, path, None))
        elif typ == "namespace":
            ns = field(t, "name", str, path, required=True)
            namespaces[ns] = field(t, "description", str, path, default="")
            for j, inner in enumerate(field(t, "tools", list, path, required=True)):
                check(inner, dict, f"{path}.tools[{j}]")
                out.append(_tool(inner, f"{path}.tools[{j}]", ns))
        elif _TYPE.match(typ):
            hosted.append(t)  # web_search, file_search, mcp, code_interpreter, image_generation, computer, …
        else:
            raise invalid(f"tool type '{typ[:64]}' is not valid", param=f"{path}.type")
    rx.hosted_tools, rx.namespaces = hosted, namespaces
    return out


def tool_choice(tc: Any, parallel: bool | None, rx: ResponsesExtras) -> ToolChoice | None:
    if tc is None or isinstance(tc, str):
        return oc.plain_tool_choice(tc, parallel)
    check(tc, dict, "tool_choice")
    typ = field(tc, "type", str, "tool_choice", required=True)
    if typ in ("function", "custom"):
        name = tk.flat_name(
            field(tc, "namespace", str, "tool_choice"), field(tc, "name", str, "tool_choice", required=True)
        )
        return ToolChoice(mode="tool", name=name, parallel=parallel)
    if not _TYPE.match(typ):
        raise invalid(f"tool_choice type '{typ[:64]}' is not valid", param="tool_choice.type")
    rx.tool_choice = tc  # allowed_tools, a hosted tool, mcp, shell, apply_patch: exact for Responses
    mode = field(tc, "mode", str, "tool_choice", default="auto") if typ == "allowed_tools" else "auto"
    return ToolChoice(mode="required" if mode == "required" else "auto", parallel=parallel)


def text_format(text: Any) -> ResponseFormat | None:
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
        return ResponseFormat(
            type="json_schema",
            name=field(fmt, "name", str, p, required=True),
            schema=field(fmt, "schema", dict, p),
            strict=field(fmt, "strict", bool, p),
        )
    raise invalid(f"text.format type '{typ}' is not supported", param=f"{p}.type")


def reasoning(r: Any) -> ReasoningConfig | None:
    if r is None:
        return None
    check(r, dict, "reasoning")
    effort = field(r, "effort", str, "reasoning")
    summary = field(r, "summary", str, "reasoning") or field(r, "generate_summary", str, "reasoning")
    if effort is None:  # a summary alone is only a hint, not a request to reason (reasoning.py)
        return ReasoningConfig(include_thoughts=summary != "none", hint=True) if summary is not None else None
    cfg = oc.reasoning_from_effort(effort)
    if summary is not None:
        cfg.include_thoughts = summary != "none"
    return cfg


def client_options(d: dict[str, Any]) -> ResponsesClient:
    """What shapes the answer rather than the model's input: kept for the encoders and the store."""
    include = field(d, "include", list, default=[])
    for k, v in enumerate(include):
        check(v, str, f"include[{k}]")
    store = field(d, "store", bool)
    return ResponsesClient(
        include=include,
        store=True if store is None else store,
        previous_response_id=field(d, "previous_response_id", str),
    )


def decode(d: dict[str, Any]) -> Request:
    """A parsed Responses request body (state already resolved) → canonical request."""
    if d.get("conversation") is not None:
        raise invalid(
            "'conversation' (the Conversations API) is not supported; use previous_response_id or "
            "send the conversation in 'input'",
            param="conversation",
        )
    model = field(d, "model", str, required=True)
    system: list[Text] = []
    instructions = field(d, "instructions", str)
    if instructions:
        system.append(Text(text=instructions))
    raw = field(d, "input", (str, list), required=True)
    messages = (
        [Message(role="user", content=[Text(text=raw)])] if isinstance(raw, str) else items(raw, system)
    )
    rx = ResponsesExtras(
        client=client_options(d), params={k: d[k] for k in PASSTHROUGH if d.get(k) is not None}
    )
    functions = tools(field(d, "tools", list, default=[]), rx)
    choice = tool_choice(d.get("tool_choice"), field(d, "parallel_tool_calls", bool), rx)
    if not functions and choice is not None and choice.mode in ("required", "tool") and rx.hosted_tools:
        if rx.tool_choice is None:  # only hosted tools to choose from: Responses only
            rx.tool_choice = d["tool_choice"]
        choice = None
    req = Request(
        model=model,
        messages=messages,
        system=system,
        tools=functions,
        tool_choice=choice,
        response_format=text_format(d.get("text")),
        max_tokens=field(d, "max_output_tokens", int),
        temperature=oc.opt_number(d, "temperature"),
        top_p=oc.opt_number(d, "top_p"),
        top_k=field(d, "top_k", int),
        stream=bool(field(d, "stream", bool, default=False)),
        reasoning=reasoning(d.get("reasoning")),
        metadata=field(d, "metadata", dict, default={}),
        extras=Extras(responses=rx),
    )
    link_tool_results(req.messages)
    return req
