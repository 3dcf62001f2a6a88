"""Wire protocols: one module each, ending in its `ProtocolSpec` (spec.py); this is their registry.

The order is precedence on a path several protocols share (`GET /v1/models`): the first to claim it owns its
error shape, and the others' markers are checked in this order.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .anthropic import SPEC as ANTHROPIC
from .base import Codec
from .gemini import SPEC as GEMINI
from .ollama import SPEC as OLLAMA
from .openai_chat import SPEC as OPENAI
from .openai_responses import SPEC as OPENAI_RESPONSES
from .spec import ProtocolSpec

PROTOCOLS: Mapping[str, ProtocolSpec] = MappingProxyType(
    {s.name: s for s in (OPENAI, OPENAI_RESPONSES, ANTHROPIC, GEMINI, OLLAMA)}
)
# Names a provider's `protocol:` may take besides `local` (the embedded engine, which speaks no wire protocol).
UPSTREAM_PROTOCOLS: tuple[str, ...] = tuple(n for n, s in PROTOCOLS.items() if s.upstream is not None)

_CODECS: Mapping[str, Codec] = MappingProxyType(
    {
        c.name: c
        for s in PROTOCOLS.values()
        for c in (s.codec, *(r.codec for r in s.routes if r.codec is not None))
    }
)


def codec(name: str) -> Codec:
    """The (stateless, shared) codec of a protocol, or of a route's own codec (`ollama-generate`)."""
    return _CODECS[name]


__all__ = ["PROTOCOLS", "UPSTREAM_PROTOCOLS", "Codec", "ProtocolSpec", "codec"]
