"""One fake upstream per upstream protocol, started together (what most gateway tests stand in front of)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from tests.fakes.anthropic_upstream import AnthropicUpstream
from tests.fakes.gemini_upstream import GeminiUpstream
from tests.fakes.harness import FakeUpstream
from tests.fakes.ollama_upstream import OllamaUpstream
from tests.fakes.openai_upstream import OpenAIUpstream


@contextlib.contextmanager
def running_fakes(keys: Mapping[str, str | None]) -> Iterator[dict[str, FakeUpstream]]:
    """ "openai", "anthropic", "gemini", "ollama" fakes, each accepting only its key in `keys` (Ollama: None
    accepts any); stopped when the block ends."""
    fakes: dict[str, FakeUpstream] = {
        "openai": OpenAIUpstream(api_key=keys["openai"]),  # type: ignore[arg-type]
        "anthropic": AnthropicUpstream(api_key=keys["anthropic"]),  # type: ignore[arg-type]
        "gemini": GeminiUpstream(api_key=keys["gemini"]),  # type: ignore[arg-type]
        "ollama": OllamaUpstream(api_key=keys["ollama"]),
    }
    for f in fakes.values():
        f.start()
    try:
        yield fakes
    finally:
        for f in fakes.values():
            f.stop()
