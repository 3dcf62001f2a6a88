"""The embedded engine as a provider: the one adapter between the gateway and the engine.

Canonical requests become `EngineRequest`s (engine/api.py: typed, torch-free), the engine's chunks become
canonical events, and its typed errors become GatewayErrors, here and nowhere else. The engine itself (torch and
the rest of the `engine` extra) is imported only in `start`. It prepares prompts off the event loop and its decode
thread posts chunks straight to the loop; closing an attempt abandons its generation.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import ModuleType

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
from ..config import LocalProviderConfig
from ..engine.api import (
    Busy,
    ChatMessage,
    Chunk,
    ContextTooLong,
    EngineError,
    EngineRequest,
    EngineStats,
    ImagePart,
    InputInvalid,
    JsonSpec,
    LocalEngine,
    Part,
    TextPart,
    VideoPart,
)
from ..errors import ErrorKind, GatewayError, context_overflow, invalid
from ..protocols.base import ModelInfo
from ..protocols.common import new_id
from ..routing import unknown_model
from .base import Attempt, Provider
from .local_tools import OutputPlan, OutputReader, history_text, plan_output

log = logging.getLogger("smolgate.local")

_FINISH = {
    "stop": StopReason.END_TURN,
    "length": StopReason.MAX_TOKENS,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "cancelled": StopReason.END_TURN,
}
INSTALL_HINT = "pip install 'smolgate[engine]'"


def _engine_module() -> ModuleType:
    """smolgate.engine.engine, imported after the process is tuned for it; a clear error when not installed."""
    from ..engine.process import tune_process

    tune_process()  # must precede torch's first import
    try:
        from ..engine import engine
    except ImportError as exc:
        raise RuntimeError(
            f"the local provider needs the embedded engine, which is not installed ({exc.name or exc} is "
            f"missing): {INSTALL_HINT}"
        ) from exc
    return engine


def resolve_model(model: str | None) -> str:
    """`--model` if given, else a SmolVLM2 in the HF cache, else the pip-packaged SmolLM2-135M GGUF."""
    if model:
        return model
    engine = _engine_module()
    cached: str | None = engine.find_cached_smolvlm()
    if cached:
        return cached
    path = engine.packaged_gguf_path()
    log.info(
        "serving the packaged text model %s (offline). For images and video: "
        "`smolgate pull HuggingFaceTB/SmolVLM2-500M-Video-Instruct`, then restart.",
        path.name,
    )
    return str(path)


class LocalProvider(Provider):
    needs_inline_images = True  # the engine decodes pixels itself

    def __init__(self, cfg: LocalProviderConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.engine: LocalEngine | None = None
        self.cancelled = 0  # generations stopped because their client went away (observable in tests)
        self.active = 0  # generations in progress
        self.adapters: dict[str, str] = {}  # LoRA adapters being served: name -> directory
        self._counter_lock = threading.Lock()

    def count(self, name: str, delta: int) -> None:
        with self._counter_lock:
            setattr(self, name, getattr(self, name) + delta)

    async def start(self) -> None:
        engine = _engine_module()
        source = resolve_model(self.cfg.model)
        t0 = time.monotonic()
        quant = self.cfg.quant or "none"  # auto / dtype auto: resolved for this CPU and file (engine/cpu.py)
        limits = engine.Limits(compile=self.cfg.compile, step_tokens=self.cfg.step_tokens)
        if self.cfg.compile is True:
            log.info(
                "local model: the decode step is compiled after loading "
                "(seconds to a minute on a CPU; see docs/performance.md)"
            )
        elif self.cfg.compile == "background":
            log.info("local model: the decode step compiles in the background; answers start at once")
        loaded: LocalEngine = await asyncio.to_thread(
            lambda: engine.Engine.load(source, quant=quant, dtype=self.cfg.dtype, limits=limits)
        )
        for name, path in self.cfg.adapters.items():
            await self.load_adapter(name, path, engine=loaded)
        self.engine = loaded
        log.info(
            "local model %s ready in %.1fs (%s, quant: %s, compiled: %s, images: %s, video: %s)",
            loaded.model_id,
            time.monotonic() - t0,
            loaded.choice.dtype,
            loaded.choice.quant,
            self.cfg.compile,
            loaded.supports_images,
            loaded.supports_video,
        )

    def model_infos(self) -> list[ModelInfo]:
        if self.engine is None:
            return []
        return [
            ModelInfo(
                id=f"{self.name}/{self.engine.model_id}{suffix}",
                owned_by="smolgate-local",
                context_length=self.engine.context_length,
                supports_images=self.engine.supports_images,
            )
            for suffix in ["", *(f"+{name}" for name in self.adapters)]
        ]

    # ------------------------------------------------------------------ LoRA adapters

    async def load_adapter(self, name: str, path: str, *, engine: LocalEngine | None = None) -> None:
        """Serve the PEFT adapter in `path` as `<provider>/<model>+<name>` (replacing one of that name)."""
        await asyncio.to_thread((engine or self._engine()).load_adapter, name, path)
        self.adapters[name] = path
        log.info("local model: LoRA adapter %s loaded", name)

    async def unload_adapter(self, name: str) -> None:
        if name not in self.adapters:
            raise unknown_model(f"{self.name}/+{name}")
        await asyncio.to_thread(self._engine().unload_adapter, name)
        del self.adapters[name]
        log.info("local model: LoRA adapter %s unloaded", name)

    def _adapter(self, model: str) -> str | None:
        """The adapter a target model `base+adapter` names (None: the base model); a 404 for one not loaded."""
        _, plus, name = model.rpartition("+")
        if not plus:
            return None
        if name not in self.adapters:
            raise unknown_model(f"{self.name}/{model}")
        return name

    # ------------------------------------------------------------------ canonical → engine

    def _request(self, req: Request, plan: OutputPlan, model: str = "") -> EngineRequest:
        # No max_tokens from the client: generate up to the end of the context, as llama.cpp, Ollama and vLLM
        # do (a fixed cap cut agents' long edits short). One the client names must fit, or the client is told.
        return EngineRequest(
            messages=_messages(req, plan),
            max_tokens=req.max_tokens or None,
            strict_length=True,
            temperature=req.temperature or 0.0,
            top_p=req.top_p if req.top_p is not None else 1.0,
            top_k=req.top_k or 0,
            seed=req.seed,
            stop=() if plan.constrained else tuple(req.stop),  # a stop string must not cut JSON short
            constraint=JsonSpec(plan.schema) if plan.constrained else None,
            adapter=self._adapter(model),
        )

    def _engine(self) -> LocalEngine:
        if self.engine is None:
            raise GatewayError(ErrorKind.OVERLOADED, "the local model is still loading", retry_after=5)
        return self.engine

    # ------------------------------------------------------------------ provider API

    async def open(self, req: Request, model: str, api_key: str | None) -> Attempt:
        engine = self._engine()
        plan = plan_output(req)
        try:  # prompt errors (too long, an image for a text model, a full queue) raise before any event
            chunks = await engine.submit(self._request(req, plan, model))
        except EngineError as exc:
            raise _gateway_error(exc) from exc
        return LocalAttempt(self, plan, chunks, engine.model_id)

    async def complete(
        self, req: Request, model: str, api_key: str | None
    ) -> tuple[Response, int, Mapping[str, str]]:
        attempt = await self.open(req, model, api_key)
        return await collect(attempt.events()), 200, {}

    async def count_tokens(self, req: Request, model: str, api_key: str | None) -> int | None:
        if self.engine is None:
            return None
        try:
            return await self.engine.count_tokens(self._request(req, plan_output(req), model))
        except EngineError as exc:
            raise _gateway_error(exc) from exc

    def engine_stats(self) -> EngineStats | None:
        """The engine's batch and token counters for metrics (None while loading, or for an engine without)."""
        stats: Callable[[], EngineStats] | None = getattr(self.engine, "stats", None)
        return stats() if stats is not None else None

    async def aclose(self) -> None:
        """Stop the engine's decode thread (joined off the loop; generations still running fail)."""
        if (engine := self.engine) is not None:
            self.engine = None
            await asyncio.to_thread(engine.close)


def _messages(req: Request, plan: OutputPlan) -> list[ChatMessage]:
    """Canonical messages as engine messages; media stay encoded bytes (the engine decodes them, off the loop)."""
    out: list[ChatMessage] = []
    system = "\n\n".join(x for x in (req.system_text, plan.system_addendum) if x)
    if system:
        out.append(ChatMessage("system", [TextPart(system)]))
    for mi, msg in enumerate(req.messages):
        parts: list[Part] = []
        for bi, b in enumerate(msg.content):
            where = f"messages[{mi}].content[{bi}]"
            if isinstance(b, Text):
                parts.append(TextPart(b.text))
            elif isinstance(b, Image):
                parts.append(ImagePart(b.data or b"", param=where))
            elif isinstance(b, Video):
                parts.append(VideoPart(b.data or b"", param=where))
            elif isinstance(b, (ToolCall, ToolResult)):
                parts.append(TextPart(history_text(b)))
            elif isinstance(b, Reasoning):
                continue
        if parts:
            out.append(ChatMessage(msg.role, parts))
    return out


class LocalAttempt(Attempt):
    def __init__(
        self, provider: LocalProvider, plan: OutputPlan, chunks: AsyncIterator[Chunk], model_id: str
    ) -> None:
        self._p = provider
        self._reader = OutputReader(plan)
        self._chunks: AsyncIterator[Chunk] | None = chunks
        self._model_id = model_id
        self.id = new_id("local-")
        provider.count("active", +1)

    async def events(self) -> AsyncIterator[Event]:
        try:
            # The first chunk before MessageStart: a failure while the prompt is prefilled is still a plain
            # HTTP error, not a 200 and a broken stream.
            chunk = await self._next()
            yield MessageStart(id=self.id, model=self._model_id, created=int(time.time()))
            reader = self._reader
            while chunk is not None:
                if chunk.text:
                    for ev in reader.feed(chunk.text):
                        yield ev
                if chunk.finish_reason is not None:
                    break
                chunk = await self._next()
            self._finished()
            for ev in reader.close():
                yield ev
            final = chunk
            usage = (
                Usage(input_tokens=final.usage.prompt_tokens, output_tokens=final.usage.completion_tokens)
                if final is not None and final.usage is not None
                else Usage()
            )
            reason = (
                _FINISH.get(final.finish_reason or "", StopReason.END_TURN) if final else StopReason.END_TURN
            )
            if reader.calls and reason == StopReason.END_TURN:
                reason = StopReason.TOOL_USE
            yield MessageDelta(
                stop_reason=reason, stop_sequence=final.stop_sequence if final else None, usage=usage
            )
            yield MessageStop()
        finally:
            await self.aclose()

    async def _next(self) -> Chunk | None:
        assert self._chunks is not None
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            return None
        except EngineError as exc:
            self._finished()
            raise _gateway_error(exc) from exc

    def _finished(self) -> None:
        """The engine is done with this generation."""
        if self._chunks is not None:
            self._chunks = None
            self._p.count("active", -1)

    async def aclose(self) -> None:
        """Leaving before the last chunk abandons the generation (the engine frees its slot at its next step)."""
        if (chunks := self._chunks) is not None:
            self._finished()
            self._p.count("cancelled", +1)
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()


def _gateway_error(exc: EngineError) -> GatewayError:
    """An engine error as the client's error: the one place they are mapped."""
    if isinstance(exc, ContextTooLong):
        return context_overflow(exc.prompt_tokens, exc.limit, exc.max_tokens)
    if isinstance(exc, InputInvalid):
        return invalid(exc.message, param=exc.param)
    if isinstance(exc, Busy):  # the engine's admission queue is full: try later
        return GatewayError(
            ErrorKind.OVERLOADED, "the local model is at capacity; retry shortly", retry_after=exc.retry_after
        )
    log.error("local engine failed: %r", exc, exc_info=exc)
    return GatewayError(ErrorKind.INTERNAL, "the local engine failed")
