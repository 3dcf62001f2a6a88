"""Generation in three levels: `step` (one forward) -> `stream` (typed chunks) -> `generate` (one result).

`stream` owns the request-level logic: stop token ids, stop strings (held back while they might still match,
never emitted), max_tokens, cancellation (a threading.Event checked before every step) and usage counts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from .model.smolvlm import SmolVLM
from .sampling import Sampler
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


def ensure_cache(model: SmolVLM, length: int) -> None:
    """Grow the KV cache (never shrink) to hold `length` positions; only called before a prefill."""
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
    """Fill the KV cache with the prompt in chunks of `chunk` positions -> last logits [V] (None if cancelled).

    Chunking bounds activation memory on long (image/video) prompts and lets a cancel land between chunks.
    """
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
) -> Iterator[GenerationChunk]:
    """Prefill `input_ids` [1, T] (+ image tiles), then sample up to max_tokens, yielding text as it settles."""
    prompt_len = input_ids.shape[1]
    stop_ids = frozenset(stop_token_ids) | frozenset(tokenizer.eos_token_ids)
    detok, stops = StreamingDetokenizer(tokenizer), StopMatcher(stop)
    pending: list[int] = []
    generated = 0
    finish: FinishReason = "length"
    matched: str | None = None

    def final(text: str) -> GenerationChunk:
        return GenerationChunk(text, pending, finish, matched, Usage(prompt_len, generated))

    ensure_cache(model, prompt_len + max_tokens)
    logits = prefill(model, input_ids, pixel_values, cancel=cancel)
    if logits is None:
        finish = "cancelled"
        yield final("")
        return
    seen = torch.zeros(logits.shape[-1], dtype=torch.bool)
    if sampler.uses_seen:
        seen[input_ids[0]] = True
    token_buf = torch.zeros(1, 1, dtype=torch.long)  # reused every step: no per-token tensor allocation
    for i in range(max_tokens):
        if cancel is not None and cancel.is_set():
            finish = "cancelled"
            break
        token = sampler(logits, seen)
        generated += 1
        pending.append(token)
        if token in stop_ids:
            finish = "stop"
            break
        if sampler.uses_seen:
            seen[token] = True
        if text := detok.add(token):
            text, matched = stops.feed(text)
            if matched is not None:
                finish = "stop_sequence"
                yield final(text)
                return
            if text:
                yield GenerationChunk(text, pending)
                pending = []
        if i + 1 < max_tokens:
            token_buf.fill_(token)
            logits = step(model, token_buf, prompt_len + i)
    text, matched = stops.feed(detok.flush())
    if matched is not None:
        finish = "stop_sequence"
    else:
        text += stops.flush()
    yield final(text)


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
