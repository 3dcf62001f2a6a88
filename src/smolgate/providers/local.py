"""The embedded engine as a provider: canonical requests in, canonical events out.

The engine is synchronous PyTorch; it runs in a worker thread so the event loop (and every other
client) stays responsive. One model is loaded once and shared. Cancellation: when the consumer goes
away, a `threading.Event` tells the engine to stop at the next token.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import logging
import threading
import time
from typing import Any, AsyncIterator, Mapping

from ..accumulate import collect
from ..canonical import (
    Event,
    Image,
    MessageDelta,
    MessageStart,
    MessageStop,
    Reasoning,
    Request,
    Response,
    StopReason,
    Text,
    ToolCall,
    ToolResult,
    Usage,
    Video,
)
from ..config import ProviderConfig
from ..errors import ErrorKind, GatewayError, context_overflow, invalid
from ..protocols.base import ModelInfo
from ..protocols.common import new_id
from .base import Attempt, Provider
from .local_tools import OutputPlan, OutputReader, history_text, plan_output

log = logging.getLogger("smolgate.local")

_FINISH = {
    "stop": StopReason.END_TURN,
    "length": StopReason.MAX_TOKENS,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "cancelled": StopReason.END_TURN,
}
_DONE = object()


def resolve_model(model: str | None) -> str:
    """`--model` if given, else a SmolVLM2 in the HF cache, else the pip-packaged SmolLM2-135M GGUF."""
    from ..engine.engine import find_cached_smolvlm, packaged_gguf_path

    if model:
        return model
    cached = find_cached_smolvlm()
    if cached:
        return cached
    path = packaged_gguf_path()
    log.info(
        "serving the packaged text model %s (offline). For images and video: "
        "`smolgate pull HuggingFaceTB/SmolVLM2-500M-Video-Instruct`, then restart.",
        path.name,
    )
    return str(path)


class LocalProvider(Provider):
    needs_inline_images = True  # the engine decodes pixels itself

    def __init__(self, cfg: ProviderConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.engine: Any = None
        self.cancelled = 0  # generations stopped because their client went away (observable in tests)
        self.active = 0  # generations in progress
        self._token_table: Any = None
        self._counter_lock = threading.Lock()
        # Request threads mostly wait for the scheduler's decode thread; the default executor (cores + 4)
        # would cap concurrency below the engine's batch slots.
        self.threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=64, thread_name_prefix="smolgate-local"
        )

    def count(self, name: str, delta: int) -> None:
        with self._counter_lock:
            setattr(self, name, getattr(self, name) + delta)

    async def start(self) -> None:
        from ..engine.engine import Engine
        from ..engine.scheduler import Limits

        source = resolve_model(self.cfg.model)
        t0 = time.monotonic()
        quant = None if self.cfg.quant in (None, "none") else self.cfg.quant
        limits = Limits(compile=self.cfg.compile)
        if self.cfg.compile:
            log.info(
                "local model: the decode step is compiled after loading "
                "(~35-50 s for 135M on 2 cores with inductor's cache warm, ~2 min cold; minutes for 2.2B)"
            )
        self.engine = await asyncio.to_thread(
            lambda: Engine.load(source, quant=quant, dtype=self.cfg.dtype, limits=limits)
        )
        log.info(
            "local model %s ready in %.1fs (%s, quant: %s, compiled: %s, images: %s, video: %s)",
            self.engine.model_id,
            time.monotonic() - t0,
            self.cfg.dtype,
            quant or "none",
            self.cfg.compile,
            self.engine.supports_images,
            self.engine.supports_video,
        )

    def model_infos(self) -> list[ModelInfo]:
        if self.engine is None:
            return []
        return [
            ModelInfo(
                id=f"{self.name}/{self.engine.model_id}",
                owned_by="smolgate-local",
                context_length=self.engine.context_length,
                supports_images=self.engine.supports_images,
            )
        ]

    # ------------------------------------------------------------------ canonical → engine

    def _messages(self, req: Request, plan: OutputPlan) -> list[Any]:
        from PIL import Image as PILImage

        from ..engine.engine import ChatMessage, ImagePart, TextPart, VideoPart

        out: list[Any] = []
        system = "\n\n".join(x for x in (req.system_text, plan.system_addendum) if x)
        if system:
            out.append(ChatMessage("system", [TextPart(system)]))
        for mi, msg in enumerate(req.messages):
            parts: list[Any] = []
            for bi, b in enumerate(msg.content):
                where = f"messages[{mi}].content[{bi}]"
                if isinstance(b, Text):
                    parts.append(TextPart(b.text))
                elif isinstance(b, Image):
                    if not self.engine.supports_images:
                        raise invalid(
                            f"model '{self.engine.model_id}' is text-only and cannot take images "
                            "(serve a SmolVLM2 checkpoint with --model)",
                            param=where,
                        )
                    try:
                        img = PILImage.open(io.BytesIO(b.data or b""))
                        img.load()
                    except Exception:
                        raise invalid(f"'{where}' is not a decodable image", param=where) from None
                    parts.append(ImagePart(img))
                elif isinstance(b, Video):
                    if not self.engine.supports_video:
                        raise invalid(f"model '{self.engine.model_id}' cannot take video", param=where)
                    parts.append(VideoPart(b.data or b""))
                elif isinstance(b, (ToolCall, ToolResult)):
                    parts.append(TextPart(history_text(b)))
                elif isinstance(b, Reasoning):
                    continue
            if parts:
                out.append(ChatMessage(msg.role, parts))
        return out

    def _params(self, req: Request, plan: OutputPlan) -> Any:
        from ..engine.engine import GenerationParams

        # No max_tokens from the client: generate up to the end of the context, as llama.cpp, Ollama and vLLM
        # do (a fixed cap cut agents' long edits short). One the client names must fit, or the client is told.
        max_tokens = req.max_tokens or None
        extra: dict[str, Any] = {}
        if plan.constrained:
            extra["constraint"] = self._constraint(plan.schema, max_tokens)
        return GenerationParams(
            max_tokens=max_tokens,
            strict_length=True,
            temperature=req.temperature or 0.0,
            top_p=req.top_p if req.top_p is not None else 1.0,
            top_k=req.top_k or 0,
            seed=req.seed,
            stop=[] if plan.constrained else list(req.stop),  # a stop string must not cut JSON short
            **extra,
        )

    def _constraint(self, schema: Any, max_tokens: int | None) -> Any:
        from ..engine.json_constraint import JsonConstraint, TokenTable, vocab_from_tokenizer

        if self._token_table is None:  # built once per model (~0.2 s)
            self._token_table = TokenTable(vocab_from_tokenizer(self.engine.tokenizer.hf))
        try:
            return JsonConstraint(
                schema, self._token_table, self.engine.tokenizer.eos_token_ids, max_tokens=max_tokens
            )
        except ValueError as exc:
            raise invalid(f"unsupported JSON schema: {exc}", param="response_format") from None

    # ------------------------------------------------------------------ provider API

    async def open(self, req: Request, model: str, api_key: str | None) -> Attempt:
        if self.engine is None:
            raise GatewayError(ErrorKind.OVERLOADED, "the local model is still loading", retry_after=5)
        plan = plan_output(req)
        return LocalAttempt(self, plan, self._messages(req, plan), self._params(req, plan))

    async def complete(
        self, req: Request, model: str, api_key: str | None
    ) -> tuple[Response, int, Mapping[str, str]]:
        attempt = await self.open(req, model, api_key)
        return await collect(attempt.events()), 200, {}

    async def count_tokens(self, req: Request, model: str, api_key: str | None) -> int | None:
        if self.engine is None:
            return None
        return await asyncio.to_thread(self.engine.count_tokens, self._messages(req, plan_output(req)))

    async def aclose(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)


class LocalAttempt(Attempt):
    def __init__(self, provider: LocalProvider, plan: OutputPlan, messages: list[Any], params: Any) -> None:
        self._p = provider
        self._reader = OutputReader(plan)
        self._messages = messages
        self._params = params
        self._cancel = threading.Event()
        self.id = new_id("local-")

    async def events(self) -> AsyncIterator[Event]:
        engine = self._p.engine
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()  # bounded by max_tokens: one item per generated chunk

        def run() -> None:
            self._p.count("active", +1)
            try:
                for chunk in engine.stream(self._messages, self._params, cancel=self._cancel):
                    if chunk.finish_reason == "cancelled":
                        self._p.count("cancelled", +1)
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except BaseException as exc:  # delivered to the event loop, raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                self._p.count("active", -1)
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        # One worker thread per request; the engine's scheduler batches their decode steps together.
        worker = loop.run_in_executor(self._p.threads, run)
        try:
            # Prompt errors (too long for the context, an image for a text model, a full queue) come first:
            # raised before MessageStart, the client gets a plain HTTP error, not a 200 and a broken stream.
            item = await queue.get()
            _raise_failure(item)
            yield MessageStart(id=self.id, model=engine.model_id, created=int(time.time()))
            reader, final = self._reader, None
            while item is not _DONE:
                _raise_failure(item)
                if item.text:
                    for ev in reader.feed(item.text):
                        yield ev
                if item.finish_reason is not None:
                    final = item
                item = await queue.get()
            for ev in reader.close():
                yield ev
            usage = (
                Usage(input_tokens=final.usage.prompt_tokens, output_tokens=final.usage.completion_tokens)
                if final is not None and final.usage is not None
                else Usage()
            )
            reason = _FINISH.get(final.finish_reason, StopReason.END_TURN) if final else StopReason.END_TURN
            if reader.calls and reason == StopReason.END_TURN:
                reason = StopReason.TOOL_USE
            yield MessageDelta(
                stop_reason=reason, stop_sequence=final.stop_sequence if final else None, usage=usage
            )
            yield MessageStop()
        finally:
            self._cancel.set()
            await worker

    async def aclose(self) -> None:
        self._cancel.set()


def _raise_failure(item: Any) -> None:
    """An exception from the engine thread as the client's error (no-op for chunks and the end marker)."""
    from ..engine.engine import PromptTooLong
    from ..engine.scheduler import QueueFull

    if not isinstance(item, BaseException):
        return
    if isinstance(item, PromptTooLong):
        raise context_overflow(item.prompt_tokens, item.limit, item.max_tokens)
    if isinstance(item, ValueError):
        raise invalid(str(item))
    if isinstance(item, QueueFull):  # the engine's admission queue is full: try later
        raise GatewayError(
            ErrorKind.OVERLOADED, "the local model is at capacity; retry shortly", retry_after=1
        )
    log.error("local engine failed: %r", item)
    raise GatewayError(ErrorKind.INTERNAL, "the local engine failed")
