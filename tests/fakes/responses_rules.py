"""What api.openai.com's Responses endpoint accepts and how it names a call, for the fake OpenAI upstream.

The sets below follow openai-python's `types/responses` (ResponseCreateParams, ToolParam,
ResponseInputItemParam): anything else is refused with the real API's 400, so a gateway that forwards a
field or item the real API does not know fails here too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Any

FIELDS = {
    "access_programs",
    "background",
    "background_options",
    "context_management",
    "conversation",
    "image",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "model",
    "moderation",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
}
TOOL_TYPES = {
    "function",
    "file_search",
    "computer",
    "computer_use_preview",
    "web_search",
    "web_search_2025_08_26",
    "mcp",
    "code_interpreter",
    "programmatic_tool_calling",
    "image_generation",
    "local_shell",
    "shell",
    "custom",
    "namespace",
    "tool_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "apply_patch",
}
ITEM_TYPES = {
    "message",
    "additional_tools",
    "apply_patch_call",
    "apply_patch_call_output",
    "code_interpreter_call",
    "compaction",
    "compaction_trigger",
    "computer_call",
    "computer_call_output",
    "configuration_update",
    "custom_tool_call",
    "custom_tool_call_output",
    "file_search_call",
    "function_call",
    "function_call_output",
    "image_generation_call",
    "local_shell_call",
    "local_shell_call_output",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "mcp_list_tools",
    "program",
    "program_output",
    "reasoning",
    "shell_call",
    "shell_call_output",
    "tool_search_call",
    "tool_search_output",
    "web_search_call",
    "item_reference",
}
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}\Z")


def refusal(body: dict[str, Any]) -> str | None:
    """The real API's 400 message for a request it would refuse, else None."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        return f"Unknown parameter: '{unknown[0]}'."
    for i, t in enumerate(body.get("tools") or []):
        typ = t.get("type") if isinstance(t, dict) else None
        if typ not in TOOL_TYPES:
            return f"Invalid value: '{typ}'. Supported values are: {', '.join(sorted(TOOL_TYPES))}. (tools[{i}].type)"
        inner = t.get("tools") if typ == "namespace" else [t] if typ in ("function", "custom") else []
        for j, f in enumerate(inner or []):
            if f.get("type") not in ("function", "custom"):
                return f"Invalid value: '{f.get('type')}' (tools[{i}].tools[{j}].type)"
            if not _NAME.match(str(f.get("name"))):
                return f"Invalid 'tools[{i}].name': string does not match pattern '^[a-zA-Z0-9_-]+$'."
    inp = body.get("input")
    for i, it in enumerate(inp if isinstance(inp, list) else []):
        typ = it.get("type", "message") if isinstance(it, dict) else None
        if typ not in ITEM_TYPES:
            return f"Invalid value: '{typ}'. (input[{i}].type)"
    return None


def tool_index(body: dict[str, Any]) -> dict[str, tuple[str | None, str, dict]]:
    """Callable tools by name (namespaced ones by their own name): (namespace, function|custom, parameters)."""
    out: dict[str, tuple[str | None, str, dict]] = {}
    for t in body.get("tools") or []:
        if t.get("type") in ("function", "custom"):
            out[t["name"]] = (None, t["type"], t.get("parameters") or {})
        elif t.get("type") == "namespace":
            for f in t.get("tools") or []:
                out[f["name"]] = (t["name"], f["type"], f.get("parameters") or {})
    return out


def call_item(
    name: str, args: dict, index: dict[str, tuple[str | None, str, dict]], n: int = 1
) -> dict[str, Any]:
    """The output item the real API emits for the n-th call of a reply: function_call (with its namespace) or
    custom_tool_call (free-form input: here the first string argument the script chose)."""
    ns, kind, _ = index.get(name, (None, "function", {}))
    if kind == "custom":
        text = next((v for v in args.values() if isinstance(v, str)), "")
        item: dict[str, Any] = {
            "id": f"ctc_fake{n}",
            "type": "custom_tool_call",
            "status": "completed",
            "call_id": f"call_fake{n}",
            "name": name,
            "input": text,
        }
    else:
        import json

        item = {
            "id": f"fc_fake{n}",
            "type": "function_call",
            "status": "completed",
            "call_id": f"call_fake{n}",
            "name": name,
            "arguments": json.dumps(args),
        }
    if ns:
        item["namespace"] = ns
    return item


_SEAL = secrets.token_bytes(16)


def _sealed(item_id: str) -> str:
    mac = hmac.new(_SEAL, item_id.encode(), hashlib.sha256).digest()
    return "gAAAAB" + base64.urlsafe_b64encode(item_id.encode() + b"|" + mac).decode()


def reasoning_item(body: dict[str, Any]) -> dict[str, Any] | None:
    """The reasoning item a reasoning model emits first: a summary when asked for one, encrypted_content when
    `include` asks for it (opaque, only this fake can open it), none with effort "none"."""
    r = body.get("reasoning") or {}
    if r.get("effort") == "none":
        return None
    item: dict[str, Any] = {"id": f"rs_fake{secrets.token_hex(4)}", "type": "reasoning", "summary": []}
    if r.get("summary"):
        item["summary"] = [{"type": "summary_text", "text": "Thinking it over."}]
    if "reasoning.encrypted_content" in (body.get("include") or []):
        item["encrypted_content"] = _sealed(item["id"])
    return item


def reasoning_refusal(body: dict[str, Any]) -> str | None:
    """Reasoning items sent back: without encrypted_content the API looks the id up among stored items (this
    fake stores none), with it the content must be one the API issued."""
    inp = body.get("input")
    for i, it in enumerate(inp if isinstance(inp, list) else []):
        if not isinstance(it, dict) or it.get("type") != "reasoning":
            continue
        enc = it.get("encrypted_content")
        if enc is None:
            return f"Item with id '{it.get('id')}' not found. (input[{i}])"
        try:
            raw = base64.urlsafe_b64decode(str(enc)[6:].encode())
            item_id = raw.split(b"|", 1)[0].decode()  # the id has no "|"; the MAC may
        except (ValueError, UnicodeDecodeError):
            item_id = ""
        if not str(enc).startswith("gAAAAB") or not hmac.compare_digest(_sealed(item_id), str(enc)):
            return f"The encrypted content for item input[{i}] could not be verified."
    return None
