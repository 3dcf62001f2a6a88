"""How waiting requests join the decoding batch: memory admission, and prefill within a step's token budget.

A mixin of `Scheduler` (scheduler.py), split out to keep each file to one job; it runs on the decode thread and
works on the scheduler's state, declared below. Short text prompts are prefilled whole, several in one padded
forward, straight into the batch's next rows; a long one (or one with images) is prefilled in chunks sized by
budget.py on a one-row cache of its own, then copied into its row: short prompts overtake it meanwhile without
anything having to move.
"""

from __future__ import annotations

import threading
from collections import deque
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import torch

from .budget import chunk_size, prefill_cost
from .generate import CACHE_GRANULARITY
from .kvcache import KVCache
from .lora.attach import Adapters
from .model.smolvlm import SmolVLM
from .requests import Generation

if TYPE_CHECKING:
    from .scheduler import Limits


class Joining:
    model: SmolVLM
    limits: Limits
    kv_tokens: int
    prefill_passes: int
    _lock: threading.Lock
    _waiting: deque[Generation]
    _rows: list[Generation]
    _filling: Generation | None
    _caches: list[KVCache]
    _attention_scale: float
    adapters: Adapters | None = None  # LoRA adapters, set by the engine when it serves any

    def _advance(self, req: Generation, logits: torch.Tensor, greedy: int | None) -> int:
        raise NotImplementedError  # Scheduler's

    def _lora(self, selection: int | list[int]) -> AbstractContextManager[None]:
        """The LoRA adapters rows use in the pass inside (lora/attach.py)."""
        return nullcontext() if self.adapters is None else self.adapters.rows(selection)

    def _join(self, req: Generation, token: int) -> None:
        raise NotImplementedError  # Scheduler's

    def _cap_for(self, length: int) -> int:
        return -(-length // CACHE_GRANULARITY) * CACHE_GRANULARITY

    def _fits(self, joining: list[Generation]) -> bool:
        """Would the batch, the prompt being prefilled and `joining` fit the slots and the cache budget?"""
        others = [*self._rows, *([self._filling] if self._filling is not None else [])]
        rows = len(others) + len(joining)
        cap = self._cap_for(max(r.reserve for r in [*joining, *others]))
        return rows <= self.limits.max_slots and rows * cap <= self.kv_tokens

    def _make_room(self, joining: list[Generation]) -> None:
        """Grow the cache (rows, then length) to hold the decoding rows and the `joining` ones; rows double to
        amortise copies."""
        resident = [*self._rows, *joining]
        rows, cap = len(resident), self._cap_for(max(r.reserve for r in resident))
        have_rows, have_cap = (self._caches[0].rows, self._caches[0].max_len) if self._caches else (0, 0)
        if rows <= have_rows and cap <= have_cap:
            return
        # cap is what the residents need now (it may shrink after a long request left): rows x cap stays in budget
        wanted = have_rows if rows <= have_rows else min(2 * have_rows, self.limits.max_slots)
        rows = max(rows, min(wanted, self.kv_tokens // cap))  # never beyond the budget
        if not self._caches:
            self._caches = self.model.text.new_caches(rows, cap)
        else:
            self._caches = [c.resized(rows, cap, keep_rows=len(self._rows)) for c in self._caches]
        self.model.text.ensure_rope(cap)

    def _prefill_group(self, budget: int) -> int:
        """Prefill the waiting text prompts that fit `budget` whole, together as one padded batch -> the budget
        used. They then join the decoding rows in queue order; prompts too long for it (or with images) are
        passed over: they take the chunked path in turn.

        A burst of short prompts costs one forward instead of one each: a forward of a few dozen positions is
        bound by per-op cost, not by its width (figures: docs/performance.md). Right padding
        changes nothing for the real positions under the causal mask, and the padded cache positions are
        overwritten by each row's own next tokens before any query can see them.
        """
        with self._lock:
            group: list[Generation] = []
            for req in self._waiting:
                if req.pixels is not None or req.dec.prompt_len > budget:
                    continue
                width = max(r.dec.prompt_len for r in [*group, req])
                if (len(group) + 1) * width > budget or not self._fits([*group, req]):
                    break  # in order from here: memory is admitted FIFO
                group.append(req)
            if not group:
                return 0
            for req in group:
                self._waiting.remove(req)
            self._make_room(group)
        lengths = [r.dec.prompt_len for r in group]
        first, used = len(self._rows), len(group) * max(lengths)  # padded positions count against the budget
        ids = torch.zeros(len(group), max(lengths), dtype=torch.long)
        for j, req in enumerate(group):
            ids[j, : lengths[j]] = req.input_ids[0]
        try:
            self.prefill_passes += 1
            with self._lora([r.adapter for r in group]):
                hidden = self.model.text(self.model.text.embed_tokens(ids), 0, row=first, caches=self._caches)
            logits = self.model.lm_head(hidden[torch.arange(len(group)), torch.tensor(lengths) - 1])
        except Exception as exc:  # the error goes to each caller's iterator
            for req in group:
                req.emit(exc)
            return used
        for j, req in enumerate(group):
            req.filled = req.pos = lengths[j]
            if req.cancelled:
                req.emit(req.dec.end("cancelled"))
                continue
            token = self._advance(req, logits[j], None)
            if token < 0:
                continue
            if (row := len(self._rows)) != first + j:  # an earlier member finished at once: close the gap
                for c in self._caches:
                    c.move_row(first + j, row, req.pos)
            self._join(req, token)
        return used

    def _start_filling(self) -> bool:
        """The head of the queue becomes the prompt prefilled in chunks, on a cache of its own, if it fits."""
        with self._lock:
            if not self._waiting or not self._fits([self._waiting[0]]):
                return False
            req = self._filling = self._waiting.popleft()
        cap = self._cap_for(req.dec.prompt_len)
        req.caches = self.model.text.new_caches(1, cap)
        self.model.text.ensure_rope(cap)
        return True

    def _prefill_chunk(self, req: Generation, budget: int) -> int:
        """Prefill the next chunk of the prompt being filled, as much as `budget` covers -> the budget used (all of
        it for a vision-encoder pass; at least 1 so the caller's loop ends). A cancelled request is dropped here,
        between chunks, with its cache."""
        if req.cancelled:
            self._drop_filling()
            req.emit(req.dec.end("cancelled"))
            return 1
        total, start = req.dec.prompt_len, req.filled
        chunk = chunk_size(total - start, start, budget, self._attention_scale)
        try:
            if req.embeds is None:
                if req.embedding is None:
                    req.embedding = self.model.embed_passes(req.input_ids, req.pixels)
                try:
                    with self._lora(req.adapter):  # a vision adapter changes the features
                        next(req.embedding)
                    return budget  # one vision-encoder pass per iteration: decode steps run in between
                except StopIteration as embedded:
                    req.embeds, req.embedding, req.pixels = embedded.value, None, None
            assert req.embeds is not None and req.caches is not None
            self.prefill_passes += 1
            with self._lora(req.adapter):
                logits = self.model(req.embeds[:, start : start + chunk], start, row=0, caches=req.caches)
        except Exception as exc:  # the error goes to its caller's iterator
            self._drop_filling()
            req.emit(exc)
            return 1
        req.filled = start + chunk
        used = max(1, round(prefill_cost(chunk, start, self._attention_scale)))
        if req.filled < total:
            return used
        self._make_room([req])  # its reservation was counted at admission (_fits), so this stays in budget
        row = len(self._rows)
        for mine, batch in zip(req.caches, self._caches, strict=True):
            batch.copy_row_from(mine, 0, row, total)
        self._drop_filling()
        req.pos = total
        token = self._advance(req, logits[0], None)
        if token >= 0:
            self._join(req, token)
        return used

    def _drop_filling(self) -> None:
        """The prompt being prefilled is done with its own cache (joined, cancelled or failed): free it."""
        if (req := self._filling) is not None:
            req.caches, req.embeds, req.embedding, req.pixels = None, None, None, None
            self._filling = None
