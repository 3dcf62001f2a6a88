"""A submitted generation as the decode thread sees it, and the errors `Scheduler.submit` raises before queueing."""

from __future__ import annotations

import threading
from collections.abc import Generator

import torch

from .api import Busy, ContextTooLong
from .delivery import Sink, Ticket
from .generate import Decoding, GenerationChunk
from .kvcache import KVCache


class QueueFull(Busy):
    """Every slot is busy and the wait queue is at its bound: retry later."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=1.0)


class TooLongForCache(ContextTooLong):
    """A request's prompt + max_tokens alone exceeds the KV-cache token budget."""

    def __init__(self, prompt_tokens: int, budget: int, max_tokens: int) -> None:
        message = f"prompt ({prompt_tokens}) + max_tokens ({max_tokens}) exceeds the KV cache budget of {budget} tokens"
        super().__init__(prompt_tokens, budget, max_tokens, message=message)


class Generation:
    """One submitted generation as the decode thread sees it."""

    __slots__ = (
        "abandoned",
        "adapter",
        "caches",
        "cancel",
        "dec",
        "embedding",
        "embeds",
        "filled",
        "input_ids",
        "picker",
        "pixels",
        "pos",
        "reserve",
        "sink",
        "ticket",
    )

    def __init__(
        self,
        input_ids: torch.Tensor,
        pixels: torch.Tensor | None,
        dec: Decoding,
        cancel: threading.Event | None,
        sink: Sink,
        adapter: int = -1,
    ) -> None:
        self.adapter = adapter  # LoRA slot (lora/attach.py), -1: the base model
        self.input_ids, self.pixels, self.dec, self.picker, self.cancel = (
            input_ids,
            pixels,
            dec,
            dec.picker,
            cancel,
        )
        # the prompt embedding, pass by pass, until `embeds` holds it
        self.embedding: Generator[None, None, torch.Tensor] | None = None
        self.embeds: torch.Tensor | None = None  # [1, T, hidden] once embedded
        self.reserve = dec.prompt_len + dec.max_tokens  # cache positions it may need
        self.filled = 0  # prompt positions prefilled so far
        # while prefilled in chunks: its own one-row cache, copied into its batch row when it joins (short prompts
        # that overtake it join the batch meanwhile, and nothing has to move it out of their way)
        self.caches: list[KVCache] | None = None
        self.pos = 0  # next cache position to write (= tokens in the cache) once decoding
        self.sink = sink
        self.ticket = Ticket()  # the caller's handle: abandoning it cancels the request

    @property
    def cancelled(self) -> bool:
        return self.ticket.abandoned or (self.cancel is not None and self.cancel.is_set())

    def emit(self, item: GenerationChunk | BaseException) -> None:
        """Hand an item to the caller; a sink that fails (its event loop closed) abandons the request."""
        try:
            self.sink(item)
        except Exception:  # nobody is left to tell
            self.ticket.abandon()
