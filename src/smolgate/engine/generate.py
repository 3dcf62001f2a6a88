"""A request's output: typed chunks, and `Decoding`, the bookkeeping that turns sampled tokens into them.

`Decoding` applies stop token ids, stop strings (held back while they might still match, never emitted;
smolgate.stops), a constraint's end, max_tokens and usage counts. The batching scheduler (scheduler.py) drives it;
the single-sequence loop the scheduler is tested against lives in tests/engine/oracle.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..stops import StopMatcher
from .sampling import TokenPicker
from .tokenizer import StreamingDetokenizer, Tokenizer

FinishReason = Literal["stop", "length", "stop_sequence", "cancelled"]
CACHE_GRANULARITY = 256  # KV cache grows in these steps so its shape rarely changes
PREFILL_CHUNK = 512  # prompt positions per prefill forward of a lone sequence
STEP_TOKENS = 256  # scheduler.Limits.step_tokens: work per scheduler iteration, in prompt positions


@dataclass(slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(slots=True)
class GenerationChunk:
    """New text and the sampled token ids behind it; the last chunk has finish_reason (and usage) set."""

    text: str
    token_ids: list[int]
    finish_reason: FinishReason | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None


@dataclass(slots=True)
class GenerationResult:
    text: str
    finish_reason: FinishReason
    stop_sequence: str | None
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int]


class Decoding:
    """One request's output bookkeeping (the scheduler's, and the single-sequence test oracle's).

    `push(token)` applies stop ids, the constraint's end, stop strings (held back while they might still match,
    never emitted) and max_tokens, and returns the chunk to emit, if any; once `finish` is set that chunk was the
    last one (it carries finish_reason and usage).
    """

    __slots__ = (
        "_detok",
        "_pending",
        "_stops",
        "finish",
        "generated",
        "max_tokens",
        "picker",
        "prompt_len",
        "stop_ids",
    )

    def __init__(
        self,
        tokenizer: Tokenizer,
        picker: TokenPicker,
        *,
        prompt_len: int,
        max_tokens: int,
        stop: Sequence[str] = (),
        stop_token_ids: Iterable[int] = (),
    ) -> None:
        self.picker, self.prompt_len, self.max_tokens = picker, prompt_len, max_tokens
        self.stop_ids = frozenset(stop_token_ids) | frozenset(tokenizer.eos_token_ids)
        self._detok, self._stops = StreamingDetokenizer(tokenizer), StopMatcher(stop)
        self._pending: list[int] = []
        self.generated = 0
        self.finish: FinishReason | None = None

    def push(self, token: int) -> GenerationChunk | None:
        """Account for a sampled token (already accepted by the picker) -> chunk to emit or None."""
        self.generated += 1
        self._pending.append(token)
        if token in self.stop_ids:
            return self.end("stop")
        text = self._detok.add(token)
        if text:
            text, matched = self._stops.feed(text)
            if matched is not None:
                return self._final("stop_sequence", text, matched)
        if self.picker.constraint_done:
            return self.end("stop", text)
        if self.generated >= self.max_tokens:
            return self.end("length", text)
        if not text:
            return None
        chunk, self._pending = GenerationChunk(text, self._pending), []
        return chunk

    def end(self, reason: FinishReason, text: str = "") -> GenerationChunk:
        """The last chunk: whatever text is still held back, then finish_reason and usage."""
        tail, matched = self._stops.feed(self._detok.flush())
        if matched is not None:
            return self._final("stop_sequence", text + tail, matched)
        return self._final(reason, text + tail + self._stops.flush())

    def _final(self, reason: FinishReason, text: str, matched: str | None = None) -> GenerationChunk:
        self.finish = reason
        usage = Usage(self.prompt_len, self.generated)
        chunk, self._pending = GenerationChunk(text, self._pending, reason, matched, usage), []
        return chunk


def collect(chunks: Iterable[GenerationChunk]) -> GenerationResult:
    """Concatenate a chunk stream into one result (the last chunk carries finish reason and usage)."""
    texts: list[str] = []
    ids: list[int] = []
    last: GenerationChunk | None = None
    for last in chunks:
        texts.append(last.text)
        ids.extend(last.token_ids)
    assert last is not None and last.finish_reason is not None and last.usage is not None
    usage = last.usage
    return GenerationResult(
        "".join(texts),
        last.finish_reason,
        last.stop_sequence,
        usage.prompt_tokens,
        usage.completion_tokens,
        ids,
    )
