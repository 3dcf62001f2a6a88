"""Token sampling as a composition of small pure logit filters (applied in transformers' order).

Each filter maps logits [..., V] (fp32) to logits; removed tokens get -inf. `Sampler` composes the ones a
request needs into one callable `(logits, seen) -> token id`, where `seen` is a bool mask [V] of tokens already
in the context (for the repetition penalty), kept up to date by the caller in O(1) per token.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import partial
from typing import Protocol

import torch

Filter = Callable[[torch.Tensor], torch.Tensor]


class Constraint(Protocol):
    """A per-request logits mask (e.g. JSON-schema constrained decoding), applied before the sampler."""

    @property
    def done(self) -> bool: ...  # nothing but an end may follow: the request finishes with "stop"

    def mask_logits(self, logits: torch.Tensor) -> torch.Tensor: ...  # [V] -> [V], disallowed ids at -inf

    def advance(self, token_id: int) -> None: ...


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style: tokens in context get logit/penalty if positive, logit*penalty if negative."""
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def apply_temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    return logits / t


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits (ties at the k-th value survive, as in the reference)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability mass reaches p (always at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of strictly more likely tokens
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def argmax_rows(logits: torch.Tensor) -> torch.Tensor:
    """logits [..., V] -> the index of each row's largest value (the first on ties, NaN counting as largest, as
    `argmax`). `max(dim).indices` gives the same indices faster than torch 2.13's CPU `argmax`
    (docs/performance.md)."""
    return logits.max(dim=-1).indices


def greedy(logits: torch.Tensor) -> int:
    return int(argmax_rows(logits))


def categorical(logits: torch.Tensor, generator: torch.Generator | None) -> int:
    probs = logits.softmax(dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


class Sampler:
    """`sampler(logits [V], seen [V] bool) -> token id`; built once per request from the filters it needs."""

    __slots__ = ("filters", "generator", "penalty")

    def __init__(
        self,
        *,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
    ) -> None:
        # temperature 0 means greedy: top-k / top-p cannot change the argmax, so they are not composed at all.
        self.filters: list[Filter] = []
        self.generator: torch.Generator | None = None
        if temperature > 0:
            if temperature != 1.0:
                self.filters.append(partial(apply_temperature, t=temperature))
            if top_k > 0:
                self.filters.append(partial(top_k_filter, k=top_k))
            if top_p < 1.0:
                self.filters.append(partial(top_p_filter, p=top_p))
            self.generator = torch.Generator()
            # unseeded: from the OS, not torch's global generator, which user code may seed and which every
            # torch.compile (the engine's background one too) saves and restores: two requests could repeat
            self.generator.manual_seed(seed if seed is not None else secrets.randbits(62))
        self.penalty = repetition_penalty if repetition_penalty != 1.0 else None

    @property
    def uses_seen(self) -> bool:
        """Whether the caller must keep the `seen` mask up to date (only the repetition penalty reads it)."""
        return self.penalty is not None

    def __call__(self, logits: torch.Tensor, seen: torch.Tensor) -> int:
        logits = logits.float()
        if self.penalty is not None:
            logits = apply_repetition_penalty(logits, seen, self.penalty)
        for f in self.filters:
            logits = f(logits)
        return categorical(logits, self.generator) if self.generator is not None else greedy(logits)


class TokenPicker:
    """One request's choice of the next token: its constraint's mask, then its Sampler.

    Owns the `seen` mask the repetition penalty reads (prompt ids + generated ids), so a batched loop can keep
    one picker per row and call it on that row's logits only.
    """

    __slots__ = ("_prompt_ids", "_seen", "constraint", "sampler", "vocab_size")

    def __init__(
        self,
        sampler: Sampler,
        vocab_size: int,
        prompt_ids: torch.Tensor,
        constraint: Constraint | None = None,
    ) -> None:
        self.sampler, self.constraint, self.vocab_size = sampler, constraint, vocab_size
        # built at first use, on the engine's compute thread: a 49k-element fill is already an OpenMP-parallel op,
        # and the thread that runs one keeps a worker pool that slows the compute thread (scheduler.py)
        self._prompt_ids = prompt_ids
        self._seen: torch.Tensor | None = None

    @property
    def seen(self) -> torch.Tensor:
        """Bool mask [V] of prompt and generated tokens (empty unless the sampler reads it)."""
        if self._seen is None:
            seen = torch.zeros(self.vocab_size if self.sampler.uses_seen else 0, dtype=torch.bool)
            if self.sampler.uses_seen:
                seen[self._prompt_ids] = True
            self._seen = seen
        return self._seen

    @property
    def plain_greedy(self) -> bool:
        """An argmax over the raw logits gives this row's token (so a batch can take all such rows at once)."""
        return self.sampler.generator is None and self.sampler.penalty is None and self.constraint is None

    def __call__(self, logits: torch.Tensor) -> int:
        if self.constraint is not None:
            logits = self.constraint.mask_logits(logits)
        return self.sampler(logits, self.seen)

    def accept(self, token: int) -> None:
        """Record the token chosen for this request (by this picker or by a batched argmax)."""
        if self.sampler.uses_seen:
            self.seen[token] = True
        if self.constraint is not None:
            self.constraint.advance(token)

    @property
    def constraint_done(self) -> bool:
        return self.constraint is not None and self.constraint.done
