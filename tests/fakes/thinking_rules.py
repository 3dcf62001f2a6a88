"""How the real APIs refuse a tool loop whose signed reasoning was lost (the fakes refuse the same).

- Gemini 3 (a model name containing "gemini-3"): in the current turn (the model contents after the last user
  content that is not only function responses) the first functionCall part of each model step must carry its
  thoughtSignature, or one of the documented bypass values; the fake issues signatures on the first call of
  each response and refuses a missing one with the API's own message, a forged one as corrupted.
- Anthropic: every `thinking` block must carry the signature issued for its exact text; with thinking
  `enabled` (not `adaptive`, which may skip thinking on a turn), an assistant message that used tools and is
  answered by the tool results that end the conversation must open with a `thinking` / `redacted_thinking`
  block.
Each check takes the raw wire request and returns the API's error message, or None when it would pass.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

GEMINI_BYPASS = frozenset(("skip_thought_signature_validator", "context_engineering_is_the_way_to_go"))


class Signer:
    """Signatures a fake upstream hands out and later checks: an HMAC of the signed text, per fake instance."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(16)

    def sign(self, text: str) -> str:
        mac = hmac.new(self._secret, text.encode(), hashlib.sha256).digest()
        return base64.b64encode(b"\x12" + mac).decode()  # shaped like a real one: opaque base64

    def valid(self, text: str, signature: Any) -> bool:
        """Compared as bytes: google-genai keeps thought_signature as bytes and sends it back url-safe encoded."""
        if not isinstance(signature, str):
            return False
        try:
            got = base64.b64decode(
                signature.replace("-", "+").replace("_", "/") + "=" * (-len(signature) % 4)
            )
        except ValueError:
            return False
        return hmac.compare_digest(got, base64.b64decode(self.sign(text)))


def call_text(fc: dict[str, Any]) -> str:
    """What a fake Gemini signature covers: the call's name and arguments."""
    return f"{fc.get('name')}:{json.dumps(fc.get('args') or {}, sort_keys=True)}"


def _g(obj: Any, camel: str) -> Any:
    if not isinstance(obj, dict):
        return None
    return (
        obj[camel] if camel in obj else obj.get("".join("_" + c.lower() if c.isupper() else c for c in camel))
    )


def gemini_signature_rule(model: str, contents: list[Any], signer: Signer) -> str | None:
    if "gemini-3" not in model:
        return None
    start = 0
    for i, c in enumerate(contents):
        parts = _g(c, "parts") or []
        if (
            isinstance(c, dict)
            and c.get("role", "user") == "user"
            and any(isinstance(p, dict) and _g(p, "functionResponse") is None for p in parts)
        ):
            start = i + 1
    for i in range(start, len(contents)):
        c = contents[i]
        if not isinstance(c, dict) or c.get("role") != "model":
            continue
        calls = [p for p in _g(c, "parts") or [] if isinstance(p, dict) and _g(p, "functionCall") is not None]
        if not calls:
            continue
        fc, sig = _g(calls[0], "functionCall"), _g(calls[0], "thoughtSignature")
        if not sig:
            return (
                "Function call is missing a thought_signature in functionCall parts. This is required for "
                "tools to work correctly, and missing thought_signature may lead to degraded model "
                f"performance. Additional data, function call `default_api:{fc.get('name')}` , position "
                f"{i + 1}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more "
                "details."
            )
        if sig not in GEMINI_BYPASS and not signer.valid(call_text(fc), sig):
            return "Corrupted thought signature."
    return None


def _blocks(m: Any) -> list[dict[str, Any]]:
    content = m.get("content") if isinstance(m, dict) else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def anthropic_thinking_rule(body: dict[str, Any], signer: Signer) -> str | None:
    messages = body.get("messages") or []
    for i, m in enumerate(messages):
        for j, b in enumerate(_blocks(m)):
            if b.get("type") == "thinking" and not signer.valid(str(b.get("thinking")), b.get("signature")):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
    if (body.get("thinking") or {}).get("type") != "enabled":
        return None
    last = max(
        (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"),
        default=None,
    )
    if last is None or not any(b.get("type") == "tool_use" for b in _blocks(messages[last])):
        return None
    if not any(b.get("type") == "tool_result" for m in messages[last + 1 :] for b in _blocks(m)):
        return None
    first = _blocks(messages[last])[0].get("type")
    if first in ("thinking", "redacted_thinking"):
        return None
    return (
        f"messages.{last}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. "
        "When `thinking` is enabled, a final `assistant` message must start with a thinking block "
        "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include "
        "thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult "
        "our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
    )
