"""Generation in three levels: `step` (one forward) -> `stream` (typed chunks) -> `generate` (one result).

Request-level logic lives in `Decoding` (stop token ids, stop strings held back while they might still match and
never emitted, a constraint's end, max_tokens, usage counts), shared by this module's single-sequence `stream`
(on the model's own cache; the reference in tests) and the batching scheduler (scheduler.py), which is what
`Engine` serves requests with. Cancellation is a threading.Event checked before every step.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from .model.smolvlm import SmolVLM
from .sampling import Constraint, Sampler, TokenPicker
from .tokenizer import StreamingDetokenizer, Tokenizer

FinishReason = Literal["stop", "length", "stop_sequence", "cancelled"]
CACHE_GRANULARITY = 256  # KV cache grows in these steps so its shape rarely changes
PREFILL_CHUNK = 512  # prompt positions per prefill forward


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


class StopMatcher:
    """Finds stop strings across chunk boundaries; withholds any tail that could be the start of one."""

    __slots__ = ("_buf", "stops")

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._buf = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        """-> (text safe to emit, matched stop string or None). After a match the rest is discarded."""
        if not self.stops:
            return text, None
        buf = self._buf + text
        hits = [(i, s) for s in self.stops if (i := buf.find(s)) >= 0]
        if hits:
            i, stop = min(hits)
            self._buf = ""
            return buf[:i], stop
        hold = 0
        for s in self.stops:  # longest suffix of buf that is a proper prefix of a stop string
            for n in range(min(len(s) - 1, len(buf)), hold, -1):
                if buf.endswith(s[:n]):
                    hold = n
                    break
        self._buf = buf[len(buf) - hold :]
        return buf[: len(buf) - hold], None

    def flush(self) -> str:
        out, self._buf = self._buf, ""
        return out


class Decoding:
    """One request's output bookkeeping, shared by the single-sequence loop and the batching scheduler.

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


def ensure_cache(model: SmolVLM, length: int) -> None:
    """Grow the model's own KV cache (never shrink) to hold `length` positions; only called before a prefill."""
    if model.text.cache_len < length:
        size = -(-length // CACHE_GRANULARITY) * CACHE_GRANULARITY
        model.text.setup_cache(size, dtype=model.dtype)


@torch.inference_mode()
def prefill(
    model: SmolVLM,
    input_ids: torch.Tensor,
    pixel_values: torch.Tensor | None = None,
    *,
    chunk: int = PREFILL_CHUNK,
    cancel: threading.Event | None = None,
) -> torch.Tensor | None:
    """Fill the model's own KV cache with the prompt in chunks of `chunk` positions -> last logits [V] (None if
    cancelled). Chunking bounds activation memory on long (image/video) prompts and lets a cancel land between
    chunks."""
    x = model.embed(input_ids, pixel_values)
    logits = None
    for start in range(0, x.shape[1], chunk):
        if cancel is not None and cancel.is_set():
            return None
        logits = model(x[:, start : start + chunk], start)
    assert logits is not None, "empty prompt"
    return logits[0]


@torch.inference_mode()
def step(model: SmolVLM, token: torch.Tensor, pos: int) -> torch.Tensor:
    """token [1, 1] at position pos -> next-token logits [V]."""
    return model.decode(token, pos)[0]


@torch.inference_mode()
def stream(
    model: SmolVLM,
    tokenizer: Tokenizer,
    input_ids: torch.Tensor,
    *,
    pixel_values: torch.Tensor | None = None,
    sampler: Sampler,
    max_tokens: int,
    stop: Sequence[str] = (),
    stop_token_ids: Iterable[int] = (),
    cancel: threading.Event | None = None,
    constraint: Constraint | None = None,
) -> Iterator[GenerationChunk]:
    """One sequence on the model's own cache, no scheduler: prefill `input_ids` [1, T] (+ image tiles), then
    sample up to max_tokens, yielding text as it settles. The reference the batched scheduler is tested against."""
    prompt_len = input_ids.shape[1]
    picker = TokenPicker(sampler, model.cfg.text.vocab_size, input_ids[0], constraint)
    dec = Decoding(
        tokenizer,
        picker,
        prompt_len=prompt_len,
        max_tokens=max_tokens,
        stop=stop,
        stop_token_ids=stop_token_ids,
    )
    ensure_cache(model, prompt_len + max_tokens)
    logits = prefill(model, input_ids, pixel_values, cancel=cancel)
    if logits is None:
        yield dec.end("cancelled")
        return
    if max_tokens == 0:
        yield dec.end("length")
        return
    token_buf = torch.zeros(1, 1, dtype=torch.long)  # reused every step: no per-token tensor allocation
    pos = prompt_len
    while True:
        if cancel is not None and cancel.is_set():
            yield dec.end("cancelled")
            return
        token = picker(logits)
        picker.accept(token)
        if (chunk := dec.push(token)) is not None:
            yield chunk
            if dec.finish is not None:
                return
        token_buf.fill_(token)
        logits = step(model, token_buf, pos)
        pos += 1


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


def generate(
    model: SmolVLM, tokenizer: Tokenizer, input_ids: torch.Tensor, **kwargs: Any
) -> GenerationResult:
    """`stream` run to completion (same arguments)."""
    return collect(stream(model, tokenizer, input_ids, **kwargs))
