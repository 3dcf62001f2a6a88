"""The single-sequence generate loop: one request on its own KV cache, no scheduler.

The reference the batching scheduler is tested against (same `Decoding`, same sampler), and a direct way to
prefill in tests. Three levels: `step` (one forward) -> `stream` (typed chunks) -> `generate` (one result).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from smolgate.engine.generate import (
    CACHE_GRANULARITY,
    PREFILL_CHUNK,
    Decoding,
    GenerationChunk,
    GenerationResult,
    collect,
)
from smolgate.engine.kvcache import KVCache
from smolgate.engine.model.smolvlm import SmolVLM
from smolgate.engine.sampling import Constraint, Sampler, TokenPicker
from smolgate.engine.tokenizer import Tokenizer


def new_caches(model: SmolVLM, length: int) -> list[KVCache]:
    """One sequence's KV caches, room for `length` positions (rounded up as the scheduler rounds)."""
    return model.text.new_caches(1, -(-length // CACHE_GRANULARITY) * CACHE_GRANULARITY)


@torch.inference_mode()
def prefill(
    model: SmolVLM,
    caches: list[KVCache],
    input_ids: torch.Tensor,
    pixel_values: torch.Tensor | None = None,
    *,
    chunk: int = PREFILL_CHUNK,
    cancel: threading.Event | None = None,
) -> torch.Tensor | None:
    """Fill `caches` with the prompt in chunks of `chunk` positions -> last logits [V] (None if
    cancelled). Chunking bounds activation memory on long (image/video) prompts and lets a cancel land between
    chunks."""
    x = model.embed(input_ids, pixel_values)
    logits = None
    for start in range(0, x.shape[1], chunk):
        if cancel is not None and cancel.is_set():
            return None
        logits = model(x[:, start : start + chunk], start, caches=caches)
    assert logits is not None, "empty prompt"
    return logits[0]


@torch.inference_mode()
def step(model: SmolVLM, caches: list[KVCache], token: torch.Tensor, pos: int) -> torch.Tensor:
    """token [1, 1] at position pos -> next-token logits [V]."""
    return model(model.text.embed_tokens(token), pos, caches=caches)[0]


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
    """One sequence on its own caches, no scheduler: prefill `input_ids` [1, T] (+ image tiles), then
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
    caches = new_caches(model, prompt_len + max_tokens)
    logits = prefill(model, caches, input_ids, pixel_values, cancel=cancel)
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
        logits = step(model, caches, token_buf, pos)
        pos += 1


def generate(
    model: SmolVLM, tokenizer: Tokenizer, input_ids: torch.Tensor, **kwargs: Any
) -> GenerationResult:
    """`stream` run to completion (same arguments)."""
    return collect(stream(model, tokenizer, input_ids, **kwargs))
