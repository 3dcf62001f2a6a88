"""Continuous batching: one decode thread owns the model and a batched KV cache; requests join and leave between steps.

Each cache row holds one sequence. Decoding sequences sit in rows 0..n-1, so a decode step is one batched forward
over contiguous views ([:n], no gather); a departure moves the last row into the hole (one copy of that row's
filled positions) instead of leaving gaps. Every iteration has a token budget (Limits.step_tokens, see `step`):
the decode step first, then new prompts that fit it whole (prefilled together straight into the next rows), then
one chunk of a long prompt, prefilled on a one-row cache of its own and copied into its row when it joins. So a
long prompt holds nobody's next token for more than one chunk, and short ones overtake it.

Admission is memory-bounded: at most `max_slots` rows, and rows x cache length (rounded up to 256) within
`kv_tokens`; a request is admitted FIFO once its reservation (prompt + max_tokens) fits, others wait in the
queue, and `submit` raises QueueFull beyond `max_queue` waiting requests. Each row keeps its own sampling
parameters, seed, stop rules, constraint and cancel Event (checked every step; a cancelled row leaves at once).

`step()` is one scheduler iteration and can be driven by hand (tests: exact join/cancel points); `start()` runs it
in the background thread that `Engine` uses. Each request's chunks (or its error) go to the sink given at `submit`,
called on the decode thread: `Engine.submit` hands them straight to an event loop, `stream` to a blocking queue.

All model compute runs on that one thread: prompt embedding and the vision encoder too (one encoder pass per
iteration, decode steps in between), and `run` brings any other model work there. With torch's OpenMP, every
thread that ever ran a parallel op keeps its own worker pool, and while two pools exist every parallel op is
slower, even with the other pool idle (figures: docs/performance.md). So the decode thread is the process's one
compute thread (compute.py), shared by every model loaded: their schedulers step on it in turn.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch

from . import compute, dequant
from .api import EngineStats
from .budget import attention_scale
from .compiled import WARM_CACHE_LEN, compile_decode_step, compile_vision, warm_up, warm_up_vision
from .delivery import Sink, Ticket
from .generate import CACHE_GRANULARITY, STEP_TOKENS, Decoding
from .joining import Joining
from .kvcache import KVCache
from .model.smolvlm import SmolVLM
from .quant import QuantLinear, warm_up_dense
from .requests import Generation, QueueFull, TooLongForCache
from .sampling import Constraint, Sampler, TokenPicker, argmax_rows
from .tokenizer import Tokenizer

__all__ = ["Limits", "QueueFull", "Scheduler", "TooLongForCache"]

T = TypeVar("T")
log = logging.getLogger(__name__)
DEFAULT_KV_BYTES = 2 << 30  # cache memory the batch may use when no token budget is given
# An open-ended request (no max_tokens from the client: it may run to the end of the context) reserves its output
# positions this many at a time. Reserving the whole context up front would let a 2.2B model's 2 GiB budget hold
# one such request instead of eight.
GROW_STEP = 512


@dataclass(frozen=True, slots=True)
class Limits:
    max_slots: int = 8  # sequences decoded together (batch rows)
    kv_tokens: int | None = None  # cache positions over all rows; None: DEFAULT_KV_BYTES worth for this model
    max_queue: int = 64  # requests waiting for a slot; one more raises QueueFull
    # Work per scheduler iteration, in prompt positions: each decoding row's next token counts one, prompt chunks
    # the rest (weighted by the context they attend to: budget.py). It bounds how long a running stream waits
    # between tokens and a new short prompt waits for a long one's chunk; a larger one prefills long prompts in
    # fewer, more efficient passes.
    step_tokens: int = STEP_TOKENS
    # torch.compile the batched decode step (compiled.py): True before the first request, "background" on a thread
    # of its own while the eager step serves (switching once it is ready; the gateway's default). Off here, for
    # callers of the Python API who do not want a compile thread.
    compile: bool | Literal["background"] = False


class Scheduler(Joining):
    def __init__(self, model: SmolVLM, tokenizer: Tokenizer, limits: Limits | None = None) -> None:
        self.model, self.tokenizer, self.limits = model, tokenizer, limits or Limits()
        text = model.cfg.text
        per_token = KVCache.bytes_per_token(text.num_kv_heads, text.head_dim, text.num_layers, model.dtype)
        self.kv_tokens = self.limits.kv_tokens or max(4096, DEFAULT_KV_BYTES // per_token)
        self._lock = compute.LOCK  # shared with the compute thread (and the process's other schedulers)
        self._wake = compute.WAKE
        self._waiting: deque[Generation] = deque()
        self._closed = False
        self._started = False
        self._jobs: deque[tuple[Callable[[], object], Future[object]]] = deque()  # `run` calls, FIFO
        # decode-thread state: rows[i] owns cache row i; `filling` is being prefilled into row len(rows)
        self._rows: list[Generation] = []
        self._filling: Generation | None = None
        self._caches: list[KVCache] = []
        slots = self.limits.max_slots
        self._tokens = torch.zeros(slots, 1, dtype=torch.long)  # next input token per row, updated in place
        self._positions = torch.zeros(slots, dtype=torch.long)  # its position per row
        self._step_fn = compile_decode_step(model) if self.limits.compile is True else model.decode_rows
        self._compiled_vision = self.limits.compile is True and compile_vision(model)
        self.warming: threading.Thread | None = None  # compiling in the background (warm_up): joined at close
        self.decode_steps = 0  # observable counters
        self.generated_tokens = 0  # one per row per decode step (metrics)
        self.peak_batch = 0
        self.prefill_passes = 0  # model forwards spent on prompts (a batch of prompts counts once)
        self._attention_scale = attention_scale(model.cfg.text)  # prompt chunk costs (budget.py)

    # -- caller side (any thread) -------------------------------------------------------------------------------

    def submit(
        self,
        input_ids: torch.Tensor,
        *,
        pixel_values: torch.Tensor | None = None,
        sampler: Sampler,
        max_tokens: int,
        stop: Sequence[str] = (),
        stop_token_ids: Iterable[int] = (),
        constraint: Constraint | None = None,
        cancel: threading.Event | None = None,
        open_ended: bool = False,
        sink: Sink,
        adapter: int = -1,
    ) -> Ticket:
        """Queue one generation whose chunks go to `sink`. Raises QueueFull / TooLongForCache before queueing.

        The prompt embedding (the vision encoder for images) runs later on the decode thread, one encoder pass
        per iteration, so a long image encode does not stall everyone's decode steps.

        open_ended: max_tokens is only the context's bound, not the client's: the request reserves cache room
        GROW_STEP positions at a time (and at most what one row can hold); when the budget has no room for its
        next step it ends with finish_reason "length".
        """
        prompt_len = input_ids.shape[1]
        if open_ended:
            max_tokens = max(1, min(max_tokens, self.max_sequence - prompt_len))
        picker = TokenPicker(sampler, self.model.cfg.text.vocab_size, input_ids[0], constraint)
        dec = Decoding(
            self.tokenizer,
            picker,
            prompt_len=prompt_len,
            max_tokens=max_tokens,
            stop=stop,
            stop_token_ids=stop_token_ids,
        )
        if max_tokens == 0:  # nothing to compute: answer without queueing
            sink(dec.end("length"))
            return Ticket()
        req = Generation(input_ids, pixel_values, dec, cancel, sink, adapter)
        if open_ended:
            req.reserve = prompt_len + min(max_tokens, GROW_STEP)
        if self._cap_for(req.reserve) > self.kv_tokens:
            raise TooLongForCache(prompt_len, self.kv_tokens, max_tokens)
        self._check_queue()
        with self._lock:
            self._check_queue()
            self._waiting.append(req)
            self._wake.notify()
        return req.ticket

    @property
    def max_sequence(self) -> int:
        """The most cache positions one row can hold within the budget."""
        return self.kv_tokens // CACHE_GRANULARITY * CACHE_GRANULARITY

    def _check_queue(self) -> None:
        if len(self._waiting) >= self.limits.max_queue:
            raise QueueFull(
                f"local model queue full: {len(self._waiting)} requests already wait for one of "
                f"{self.limits.max_slots} slots (max_queue={self.limits.max_queue}); retry later"
            )

    def run(self, fn: Callable[[], T]) -> T:
        """Call fn() on the decode thread between steps (under inference_mode) and return its result or raise its
        exception; called on the decode thread itself, it runs at once."""
        if compute.on_compute_thread():
            return fn()
        self.start()
        done: Future[object] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine was closed")
            self._jobs.append((fn, done))
            self._wake.notify()
        return done.result()  # type: ignore[return-value]

    def warm_up(self) -> None:
        """Prepare, instead of in the first requests: compile the int4 dense path's unpacking (quant.warm_up_dense;
        on a thread of its own unless the decode step is compiled too), measure the bf16 vision encoder's GEMM
        shapes (rowsplit.py), and with Limits.compile compile the decode step and an int8-dynamic model's vision
        encoder (with compile="background" all of it on that thread, while serving)."""
        int4 = any(isinstance(m, QuantLinear) and m.group_size for m in self.model.modules())
        if self.limits.compile == "background":  # one thread compiles everything, one thing at a time
            # input buffers for the compiled step, made here outside inference mode like the scheduler's own
            buffers = torch.zeros_like(self._tokens), torch.zeros_like(self._positions)
            self.warming = dequant.compile_aside(lambda: self._compile_aside(int4, *buffers))
            return
        if int4:
            if self.limits.compile:  # the decode step's compile below must not overlap another
                self.run(lambda: warm_up_dense(self.model))
            else:  # on a thread of its own: the first requests meanwhile prefill with the eager unpacking
                self.warming = dequant.compile_aside(lambda: warm_up_dense(self.model, self._is_closed))
        if (vision := self.model.vision) is not None and self.model.dtype == torch.bfloat16:
            self.run(vision.warm_up)
        if self.limits.compile:
            self.run(lambda: warm_up(self._step_fn, self.model, self._tokens, self._positions))
        if self._compiled_vision:
            self.run(lambda: warm_up_vision(self.model))

    def _compile_aside(self, int4: bool, tokens: torch.Tensor, positions: torch.Tensor) -> None:
        """compile="background", on the warm-up thread: the int4 unpacking, then the decode step, traced on input
        buffers of its own (serving keeps using the scheduler's meanwhile), which the decode thread adopts with the
        compiled step between two steps."""
        if int4:
            warm_up_dense(self.model, self._is_closed)
        try:
            if (vision := self.model.vision) is not None and self.model.dtype == torch.bfloat16:
                self.run(vision.warm_up)
            t0, text = time.monotonic(), self.model.cfg.text
            self.run(lambda: self.model.text.ensure_rope(max(text.max_position_embeddings, WARM_CACHE_LEN)))
            step = compile_decode_step(self.model)
            warm_up(step, self.model, tokens, positions, self._is_closed)

            def adopt() -> None:
                tokens.copy_(self._tokens)
                positions.copy_(self._positions)
                self._tokens, self._positions, self._step_fn = tokens, positions, step

            if not self._closed:
                self.run(adopt)
        except RuntimeError:
            if self._closed:  # closed meanwhile: `run` refused, nothing left to switch to
                return
            raise
        if not self._closed:
            log.info(
                "local model: the compiled decode step is in use (compiled in %.0f s)", time.monotonic() - t0
            )

    def _is_closed(self) -> bool:
        return self._closed

    @property
    def compiled_step(self) -> bool:
        """Whether the decode step in use is the compiled one (a bound method compares equal, never identical)."""
        return self._step_fn != self.model.decode_rows

    def start(self) -> None:
        """Have the compute thread step this scheduler in the background (idempotent)."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        compute.join(self)
        # Close before interpreter teardown: a daemon thread killed there while inside torch dies with "terminate
        # called without an active exception" (seen in the engine bench). A weak reference, so an exit hook never
        # keeps a dropped engine (and its model) alive.
        atexit.register(_close_at_exit, weakref.ref(self))

    def close(self) -> None:
        """Stop stepping this scheduler, and a background compile at its next graph; unfinished requests get a
        RuntimeError. A compile left running would hold a core for nothing, and every torch.compile saves and
        restores torch's global random state, which would rewind it under the process's other threads."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        compute.leave(self)
        if self.warming is not None and self.warming is not threading.current_thread():
            self.warming.join()

    def stats(self) -> EngineStats:
        """A snapshot for metrics. Read without the lock: plain ints and lengths, a scrape may be a step stale."""
        return EngineStats(
            batch=len(self._rows),
            waiting=len(self._waiting) + (self._filling is not None),
            generated_tokens=self.generated_tokens,
        )

    @property
    def busy(self) -> bool:
        return bool(self._waiting or self._rows or self._filling or self._jobs)

    # -- decode thread ------------------------------------------------------------------------------------------

    # compute.Member: called by the compute thread
    @property
    def closed(self) -> bool:
        return self._closed

    def idle(self) -> None:
        self._caches = []  # nothing running: hand the cache memory back

    def fail(self, exc: BaseException) -> None:
        self._fail_all(exc)

    def finish(self) -> None:
        self._fail_all(RuntimeError("the engine was closed"))

    @torch.inference_mode()
    def step(self) -> None:
        """One iteration: one `run` job, settle the queue (cancellations), prefill within the step's token budget,
        one decode step.

        The budget (Limits.step_tokens) goes first to the decode step (one position per running row), then to
        new prompts that fit it whole (several join in one padded forward, ahead of a long prompt mid-prefill:
        a 20-token question waits for at most one chunk, not a whole 8k prompt), then to the next chunk of the
        prompt being prefilled. While one is, newcomers leave it a quarter of the budget, so it keeps moving under
        a stream of short ones. It is the only one prefilled in chunks: a prompt longer than 3/4 of the budget
        waits for it (FIFO); a vision-encoder pass is a step's prefill.
        """
        if self.adapters is not None and self.adapters.retired:  # an unloaded adapter's last request ended?
            with self._lock:
                in_use = {r.adapter for r in (*self._waiting, *self._rows)}
            if self._filling is not None:
                in_use.add(self._filling.adapter)
            self.adapters.release_unused(in_use)
        with self._lock:
            job = self._jobs.popleft() if self._jobs else None
        if job is not None:
            fn, done = job
            try:
                done.set_result(fn())
            except Exception as exc:  # raised again in the caller's thread
                done.set_exception(exc)
        with self._lock:
            for req in [r for r in self._waiting if r.cancelled]:
                self._waiting.remove(req)
                req.emit(req.dec.end("cancelled"))
        budget = self.limits.step_tokens
        left = max(budget - len(self._rows), budget // 2, 1)  # decode rows first, yet prefill always moves
        kept = left // 4  # for a prompt mid-prefill, however many newcomers overtake it
        while left > 0:
            share = left - kept if self._filling is not None else left
            if used := self._prefill_group(share):
                left -= used
                continue
            if self._filling is None and not self._start_filling():
                break
            assert self._filling is not None
            left -= self._prefill_chunk(self._filling, left)
            if self._filling is not None:
                break  # it had its chunk; newcomers may take what is left
        if self._rows:
            self._decode()

    def _join(self, req: Generation, token: int) -> None:
        """A prefilled request becomes the next decoding row (its cache row is len(rows)), `token` its next input."""
        row = len(self._rows)
        self._tokens[row, 0] = token
        self._positions[row] = req.pos
        self._rows.append(req)

    def _decode(self) -> None:
        for i in reversed(range(len(self._rows))):  # cancelled rows leave before the step
            if self._rows[i].cancelled:
                req = self._rows[i]
                self._release(i)
                req.emit(req.dec.end("cancelled"))
        self._extend_open_ended()
        n = len(self._rows)
        if n == 0:
            return
        self.decode_steps += 1
        self.generated_tokens += n
        self.peak_batch = max(self.peak_batch, n)
        kv_len = max(r.pos for r in self._rows) + 1
        adapters = [r.adapter for r in self._rows]
        # a LoRA row takes the eager step: the compiled graphs are the base model's, which base-only batches keep
        # using with adapters loaded (their wrappers enter the model only for passes with adapter rows)
        step = self._step_fn if max(adapters) < 0 else self.model.decode_rows
        with self._lora(adapters):
            logits = step(self._tokens[:n], self._positions[:n], kv_len, self._caches)
        rows = self._rows
        argmax = argmax_rows(logits).tolist() if any(r.picker.plain_greedy for r in rows) else []
        done: list[int] = []
        tokens: list[int] = []
        for i, req in enumerate(rows):
            req.pos += 1
            token = self._advance(req, logits[i], argmax[i] if req.picker.plain_greedy else None)
            tokens.append(max(token, 0))
            if token < 0:
                done.append(i)
        self._tokens[:n, 0] = torch.tensor(tokens)
        self._positions[:n] += 1
        for i in reversed(done):
            self._release(i)

    def _extend_open_ended(self) -> None:
        """Rows that used up their reservation (open-ended ones, see `submit`) reserve GROW_STEP more
        positions, growing the cache; a row the budget has no room for ends now with "length"."""
        grown = False
        for i in reversed(range(len(self._rows))):
            req = self._rows[i]
            if req.pos < req.reserve:
                continue
            wanted = min(req.dec.prompt_len + req.dec.max_tokens, req.reserve + GROW_STEP)
            others = [r.reserve for r in self._rows if r is not req]
            if self._filling is not None:
                others.append(self._filling.reserve)
            fits = (len(others) + 1) * self._cap_for(max([wanted, *others])) <= self.kv_tokens
            if fits and wanted > req.pos:
                req.reserve, grown = wanted, True
            else:
                self._release(i)
                req.emit(req.dec.end("length"))
        if grown:
            self._make_room([])

    def _advance(self, req: Generation, logits: torch.Tensor, greedy: int | None) -> int:
        """Pick the row's token (unless the batched argmax already did), record it and hand any settled text to
        the caller -> the token, or -1 once the request has finished (or failed: a faulty constraint fails its
        own request only)."""
        try:
            token = greedy if greedy is not None else req.picker(logits)
            req.picker.accept(token)
            chunk = req.dec.push(token)
        except Exception as exc:  # delivered to this request's caller
            req.emit(exc)
            return -1
        if chunk is not None:
            req.emit(chunk)
        return -1 if req.dec.finish is not None else token

    def _release(self, i: int) -> None:
        """Free row i: the last decoding row moves into it."""
        last = len(self._rows) - 1
        if i != last:
            moved = self._rows[last]
            for c in self._caches:
                c.move_row(last, i, moved.pos)
            self._rows[i] = moved
            self._tokens[i] = self._tokens[last]
            self._positions[i] = self._positions[last]
        self._rows.pop()

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            resident = [*self._rows, *([self._filling] if self._filling else []), *self._waiting]
            self._rows = []
            self._drop_filling()
            self._waiting.clear()
            jobs = [done for _, done in self._jobs]
            self._jobs.clear()
        for req in resident:
            req.emit(exc)
        for done in jobs:
            done.set_exception(exc)


def _close_at_exit(ref: weakref.ref[Scheduler]) -> None:
    if (sched := ref()) is not None:
        sched.close()
