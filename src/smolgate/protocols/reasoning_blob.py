"""Signed reasoning state of other providers, packed into a Responses `encrypted_content` string.

An Anthropic thinking block must go back with its signature (and exact text); a Gemini 3 model needs its
thoughtSignatures back. The Responses API's only place for opaque reasoning state is a reasoning item's
`encrypted_content`, which clients echo back verbatim (Codex, the Vercel AI SDK, openai-agents with
`include: ["reasoning.encrypted_content"]`). So such state is packed there, self-describing and versioned:

    smg1.<base64url(JSON {"p": provider kind, "t": text, "s": signature, "r": redacted, "c": {call id: sig}})>

and unpacked when the item comes back, restoring the canonical `Reasoning` exactly (and thoughtSignatures
of the tool calls that followed it). A real OpenAI `encrypted_content` never starts with `smg1.` and passes
through untouched. Nothing in the blob is secret: it is what the provider gave us to hand back.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from ..canonical import Reasoning
from ..errors import invalid

PREFIX = "smg1."
_GEMINI = "gemini:"  # gemini_parts.SIG_PREFIX: Gemini signatures on canonical Reasoning carry it


def needs_pack(block: Reasoning, call_sigs: dict[str, str] | None = None) -> bool:
    """Whether the block holds provider state with no Responses form (a signature, or call signatures)."""
    return bool(block.signature or call_sigs)


def pack(block: Reasoning, call_sigs: dict[str, str] | None = None) -> str:
    kind = (
        "gemini"
        if (block.signature or "").startswith(_GEMINI) or (call_sigs and not block.signature)
        else "anthropic"
    )
    obj: dict[str, Any] = {"p": kind}
    if block.text:
        obj["t"] = block.text
    if block.signature:
        obj["s"] = block.signature
    if block.redacted:
        obj["r"] = block.redacted
    if call_sigs:
        obj["c"] = call_sigs
    return PREFIX + base64.urlsafe_b64encode(orjson.dumps(obj)).decode().rstrip("=")


def unpack(value: str, param: str) -> tuple[Reasoning, dict[str, str]] | None:
    """A packed blob → (reasoning, call signatures); None for anything that is not ours (OpenAI's own)."""
    if not value.startswith(PREFIX):
        return None
    body = value[len(PREFIX) :]
    try:
        obj = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):
        raise invalid(f"'{param}' is not a valid smolgate reasoning blob", param=param) from None
    if not isinstance(obj, dict) or obj.get("p") not in ("anthropic", "gemini"):
        raise invalid(f"'{param}' is a smolgate reasoning blob of an unknown kind", param=param)
    text, sig, red, calls = obj.get("t", ""), obj.get("s"), obj.get("r"), obj.get("c") or {}
    if (
        not isinstance(text, str)
        or not isinstance(sig, (str, type(None)))
        or not isinstance(red, (str, type(None)))
        or not isinstance(calls, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in calls.items())
    ):
        raise invalid(f"'{param}' is a malformed smolgate reasoning blob", param=param)
    return Reasoning(text=text, signature=sig, redacted=red), calls
