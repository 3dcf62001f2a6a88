"""Wire protocols. `codec(name)` returns the (stateless, shared) codec for a protocol name."""

from __future__ import annotations

import importlib
from functools import cache

from .base import Codec

_CODECS = {
    "openai": ("openai_chat", "OpenAIChatCodec"),
    "openai-responses": ("openai_responses", "OpenAIResponsesCodec"),
    "anthropic": ("anthropic", "AnthropicCodec"),
    "gemini": ("gemini", "GeminiCodec"),
    "ollama": ("ollama", "OllamaChatCodec"),
    "ollama-generate": ("ollama", "OllamaGenerateCodec"),
}


@cache
def codec(name: str) -> Codec:
    module, cls = _CODECS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)()
