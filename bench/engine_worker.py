"""One engine-benchmark measurement, run in its own process so its peak RSS is honest (see bench/engine.py).

    python bench/engine_worker.py SPEC.json OUT.json

SPEC names the system ("engine" = smolgate's embedded engine, "transformers" = the reference `generate`), the
checkpoint (a directory or a .gguf file), dtype / quant and the workload sizes. Progress lines `@@step <text>` go
to stderr for the parent's progress bar. OUT gets one JSON object with the figures (absent ones are None).

Method (identical for every system, so ratios in one run compare like with like):
- prefill tok/s: prompt tokens / wall time of a 1-token generation from the text prompt (after a warm-up).
- decode tok/s: (n - 1) / (time of the n-th generated token - time of the first), greedy, EOS suppressed so the
  length is fixed (engine: no EOS ids; transformers: min_new_tokens).
- ttft_image_s: wall time from the chat message with one PIL image (fresh pixels each time, so no image cache
  hit) to the first token, preprocessing included.
- vision_ms_per_tile: vision tower + connector on K random tiles in one call, divided by K.
- streams: aggregate completion tok/s with 1/4/8 concurrent requests (engine: threads calling `Engine.stream`;
  transformers: one batched `generate`, its own way of serving several requests).
- peak_rss_mb: this process's ru_maxrss at the end (model load included).
"""

from __future__ import annotations

import inspect
import json
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from smolgate.engine.process import tune_process

tune_process()  # before torch's import: the engine's process defaults (engine rows; off for the others)

import torch  # noqa: E402 - after tune_process()

REPO = Path(__file__).resolve().parents[1]
WORDS = [
    "the",
    "river",
    "carries",
    "light",
    "stones",
    "past",
    "an",
    "old",
    "mill",
    "while",
    "seven",
    "quiet",
    "herons",
    "watch",
    "from",
    "tall",
    "grass",
    "near",
    "a",
    "bridge",
    "of",
    "grey",
    "timber",
    "and",
    "the",
    "morning",
    "wind",
    "turns",
    "slowly",
    "over",
    "fields",
    "of",
    "barley",
    "toward",
    "distant",
    "hills",
]


def step(text: str) -> None:
    print(f"@@step {text}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def rss_parts_mb() -> dict[str, float]:
    """RssAnon / RssFile now (mmapped checkpoint pages count in RSS as RssFile)."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                out[key.lower() + "_end_mb"] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return out


def random_image(seed: int, size: int) -> Any:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


def fit_words(count_tokens: Any, target: int, offset: int = 0) -> str:
    """Text whose chat prompt is close to `target` tokens (count_tokens: text -> prompt length)."""
    n = max(1, target // 2)
    text = ""
    for _ in range(4):
        text = " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(n))
        got = count_tokens(text)
        if got == target:
            break
        n = max(1, n + (target - got))
    return text


# ---------------------------------------------------------------------------------------------------------------
# prompts shared by both systems: the engine's own processor/tokenizer (the parity-tested twin of transformers')


class Prompts:
    def __init__(self, source: str, image_source: str | None) -> None:
        from smolgate.engine.messages import ChatMessage, ImagePart, TextPart

        self.ChatMessage, self.ImagePart, self.TextPart = ChatMessage, ImagePart, TextPart
        self.source = source
        path = Path(source)
        self.processor = self.image_processor = None
        if path.suffix == ".gguf":
            from smolgate.engine.gguf_loader import GGUFCheckpoint

            self.tokenizer = GGUFCheckpoint(path).tokenizer()
        elif (path / "preprocessor_config.json").is_file():
            from smolgate.engine.processor import SmolVLMProcessor

            self.processor = SmolVLMProcessor.from_pretrained(path)
            self.tokenizer = self.processor.tokenizer
            if image_source:
                self.image_processor = SmolVLMProcessor.from_pretrained(Path(image_source))
        else:
            from smolgate.engine.tokenizer import Tokenizer

            self.tokenizer = Tokenizer.from_dir(path)

    def text_messages(self, text: str) -> list[Any]:
        return [self.ChatMessage("user", [self.TextPart(text)])]

    def ids(self, messages: list[Any], processor: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        processor = processor or self.processor
        if processor is not None:
            out = processor(list(messages), add_generation_prompt=True)
            return out.input_ids, out.pixel_values
        plain = [{"role": m.role, "content": "".join(p.text for p in m.content)} for m in messages]
        prompt = self.tokenizer.apply_chat_template(plain, add_generation_prompt=True)
        return torch.tensor([self.tokenizer.encode(prompt)], dtype=torch.long), None

    def text_prompt(self, target: int, offset: int = 0) -> tuple[list[Any], torch.Tensor]:
        text = fit_words(lambda t: int(self.ids(self.text_messages(t))[0].shape[1]), target, offset)
        messages = self.text_messages(text)
        return messages, self.ids(messages)[0]

    def image_messages(self, seed: int, size: int) -> list[Any]:
        return [
            self.ChatMessage(
                "user", [self.ImagePart(random_image(seed, size)), self.TextPart("Describe this image.")]
            )
        ]

    @property
    def tile_size(self) -> int | None:
        return self.processor.tile_size if self.processor is not None else None


# ---------------------------------------------------------------------------------------------------------------


class EngineSystem:
    def __init__(self, spec: dict[str, Any], prompts: Prompts) -> None:
        from smolgate.engine.engine import Engine, GenerationParams

        self.GenerationParams = GenerationParams
        kwargs: dict[str, Any] = {"dtype": spec["dtype"]}
        params = inspect.signature(Engine.load).parameters
        if spec.get("quant", "none") != "none":
            if "quant" not in params:
                raise NotImplementedError("Engine.load has no quant parameter")
            kwargs["quant"] = spec["quant"]
        elif "quant" in params:
            kwargs["quant"] = "none"
        if spec.get("compile"):
            from smolgate.engine.scheduler import Limits

            kwargs["limits"] = Limits(
                compile=True
            )  # compiled inside load: counted in load_s, not in any timing
        self.engine = Engine.load(spec["source"], **kwargs)
        # int4 unpacking compiles on a thread of its own (eager meanwhile): time the steady state, as a server
        # that has been up a minute runs
        if (warming := self.engine.scheduler.warming) is not None:
            warming.join()
        self.prompts = prompts
        # Fixed-length generation: no EOS (random weights may emit it any time); same as min_new_tokens.
        self.engine.tokenizer.eos_token_ids = ()

    def _params(self, n: int) -> Any:
        return self.GenerationParams(max_tokens=n, temperature=0.0)

    def first_token(self, messages: list[Any]) -> float:
        t0 = time.perf_counter()
        self.engine.generate(messages, self._params(1))
        return time.perf_counter() - t0

    def first_token_image(self, messages: list[Any]) -> float:
        if self.prompts.image_processor is None:
            return self.first_token(messages)
        saved = self.engine.processor
        self.engine.processor = self.prompts.image_processor  # the 1-tile preprocessor (quick mode)
        try:
            return self.first_token(messages)
        finally:
            self.engine.processor = saved

    def decode(self, messages: list[Any], n: int) -> tuple[int, float]:
        """-> (tokens after the first, seconds between the first and the last token)."""
        stamps: list[tuple[float, int]] = []
        total = 0
        for chunk in self.engine.stream(messages, self._params(n)):
            if chunk.token_ids:
                total += len(chunk.token_ids)
                stamps.append((time.perf_counter(), total))
        (t_first, n_first), (t_last, n_last) = stamps[0], stamps[-1]
        return n_last - n_first, t_last - t_first

    def vision(self, pixel_values: torch.Tensor) -> float:
        # on the engine's compute thread, where serving runs it (a torch op in this thread would start a second
        # OpenMP pool and slow every later engine step; see smolgate/engine/scheduler.py)
        def encode() -> float:
            t0 = time.perf_counter()
            self.engine.model.encode_images(pixel_values)
            return time.perf_counter() - t0

        return self.engine.run(encode)

    def streams(self, prompts: list[list[Any]], n: int) -> tuple[int, float]:
        counts = [0] * len(prompts)
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                for chunk in self.engine.stream(prompts[i], self._params(n)):
                    counts[i] += len(chunk.token_ids)
            except BaseException as exc:  # reported by the parent
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        if errors:
            raise errors[0]
        return sum(counts), dt


class _Stamps:
    """A transformers streamer that records when each generated token arrives (the first put() is the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


class TransformersSystem:
    def __init__(self, spec: dict[str, Any], prompts: Prompts) -> None:
        import transformers

        transformers.logging.set_verbosity_error()
        dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[spec["dtype"]]
        path = Path(spec["source"])
        if path.suffix == ".gguf":
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=dtype
            )
        elif prompts.processor is not None:
            self.model = transformers.AutoModelForImageTextToText.from_pretrained(str(path), dtype=dtype)
        else:
            self.model = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        self.model.eval()
        self.prompts = prompts
        pad = self.model.generation_config.pad_token_id
        self.pad_id = pad if isinstance(pad, int) else 0

    @torch.inference_mode()
    def _generate(self, ids: torch.Tensor, n: int, **kw: Any) -> torch.Tensor:
        return self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=self.pad_id,
            **kw,
        )

    def first_token(self, messages: list[Any]) -> float:
        t0 = time.perf_counter()
        ids, _ = self.prompts.ids(messages)
        self._generate(ids, 1)
        return time.perf_counter() - t0

    def first_token_image(self, messages: list[Any]) -> float:
        t0 = time.perf_counter()
        ids, pixels = self.prompts.ids(messages, self.prompts.image_processor)
        assert pixels is not None
        self._generate(ids, 1, pixel_values=pixels[None])
        return time.perf_counter() - t0

    def decode(self, messages: list[Any], n: int) -> tuple[int, float]:
        ids, _ = self.prompts.ids(messages)
        stamps = _Stamps()
        self._generate(ids, n, streamer=stamps)
        return len(stamps.times) - 1, stamps.times[-1] - stamps.times[0]

    @torch.inference_mode()
    def vision(self, pixel_values: torch.Tensor) -> float:
        t0 = time.perf_counter()
        self.model.get_image_features(pixel_values=pixel_values[None])
        return time.perf_counter() - t0

    def streams(self, prompts: list[list[Any]], n: int) -> tuple[int, float]:
        rows = [self.prompts.ids(m)[0][0] for m in prompts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):  # left padding
            ids[i, width - len(r) :] = r
            mask[i, width - len(r) :] = 1
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=self.pad_id,
            )
        dt = time.perf_counter() - t0
        return (out.shape[1] - width) * len(rows), dt


# ---------------------------------------------------------------------------------------------------------------


def run(spec: dict[str, Any], out: Path | None = None) -> dict[str, Any]:
    torch.set_num_threads(int(spec.get("threads", 2)))
    result: dict[str, Any] = {"errors": {}}

    def step(text: str) -> None:  # also saves what is measured so far: a crash keeps the earlier figures
        if out is not None:
            out.write_text(json.dumps({**result, "peak_rss_mb": peak_rss_mb(), "partial_at": text}))
        print(f"@@step {text}", file=sys.stderr, flush=True)

    step("tokenizer")
    prompts = Prompts(spec["source"], spec.get("image_source"))
    step("load")
    t0 = time.perf_counter()
    system: Any = (EngineSystem if spec["system"] == "engine" else TransformersSystem)(spec, prompts)
    result["load_s"] = time.perf_counter() - t0
    result["rss_after_load_mb"] = current_rss_mb()

    def guarded(name: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # one failing figure must not lose the others
            result["errors"][name] = f"{type(exc).__name__}: {exc}"
            print(f"{name} failed: {exc!r}", file=sys.stderr, flush=True)
            return None

    messages, ids = prompts.text_prompt(spec["prompt_tokens"])
    result["prompt_tokens"] = int(ids.shape[1])
    result["prompt_ids"] = ids[0].tolist()
    step("warm-up")
    guarded("warmup", lambda: system.decode(prompts.text_prompt(16, offset=5)[0], 4))

    step("prefill")
    times = [
        t
        for t in (guarded("prefill", lambda: system.first_token(messages)) for _ in range(spec["repeats"]))
        if t
    ]
    result["prefill_s"] = min(times) if times else None
    result["prefill_tok_s"] = result["prompt_tokens"] / result["prefill_s"] if times else None

    step(f"decode {spec['new_tokens']} tokens")
    # median of `repeats` runs (the same rule as the llama.cpp worker): one short run is at the mercy of the VM
    runs = [
        d
        for d in (
            guarded("decode", lambda: system.decode(messages, spec["new_tokens"]))
            for _ in range(spec["repeats"])
        )
        if d and d[1] > 0
    ]
    if runs:
        result["decode_tok_s_runs"] = [n / s for n, s in runs]
        result["decode_tokens"], result["decode_s"] = sorted(runs, key=lambda d: d[0] / d[1])[len(runs) // 2]
        result["decode_tok_s"] = statistics.median(result["decode_tok_s_runs"])

    if prompts.processor is not None:
        tile = (prompts.image_processor or prompts.processor).tile_size
        step("vision")
        k = spec["vision_tiles"]
        rng = np.random.default_rng(3)  # numpy: no torch op in this thread (see EngineSystem.vision)

        def tiles(n: int) -> torch.Tensor:
            return torch.from_numpy(rng.uniform(-1, 1, (n, 3, tile, tile)).astype(np.float32))

        guarded("vision", lambda: system.vision(tiles(1)))
        per = []
        for _ in range(spec["repeats"]):
            pv = tiles(k)
            t = guarded("vision", lambda pv=pv: system.vision(pv))
            if t:
                per.append(t / k)
        result["vision_tile_px"] = tile
        result["vision_batch_tiles"] = k
        result["vision_ms_per_tile"] = min(per) * 1000 if per else None

        image_msgs = prompts.image_messages(1, spec["image_px"])
        ids_img, pix = prompts.ids(image_msgs, prompts.image_processor)
        result["image_tiles"] = int(pix.shape[0]) if pix is not None else 0
        result["image_prompt_tokens"] = int(ids_img.shape[1])
        if spec.get("image_warmup", True):  # a different image: no image-cache hit on the timed one
            step("image prompt (warm-up)")
            guarded(
                "ttft_image", lambda: system.first_token_image(prompts.image_messages(2, spec["image_px"]))
            )
        step(f"image prompt: {result['image_tiles']} tiles, {result['image_prompt_tokens']} tokens")
        result["ttft_image_s"] = guarded("ttft_image", lambda: system.first_token_image(image_msgs))

    result["streams"] = {}
    for n_streams in spec["streams"]:
        step(f"{n_streams} concurrent streams")
        batch = [prompts.text_prompt(spec["stream_prompt_tokens"], offset=7 * i)[0] for i in range(n_streams)]
        got = guarded(f"streams_{n_streams}", lambda b=batch: system.streams(b, spec["stream_tokens"]))
        if got:
            tokens, dt = got
            result["streams"][str(n_streams)] = {"tokens": tokens, "seconds": dt, "tok_s": tokens / dt}
    if isinstance(system, EngineSystem):
        result["concurrency"] = "threads calling Engine.stream"
    else:
        result["concurrency"] = "one batched generate (left padding)"
    result["peak_rss_mb"] = peak_rss_mb()
    result.update(rss_parts_mb())
    # OS threads at the end: the engine should own one OpenMP pool (its compute thread); more hints at a stray
    # torch op in another thread (see smolgate/engine/scheduler.py)
    result["os_threads_end"] = (
        len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None
    )
    return result


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    sys.path.insert(0, str(REPO / "src"))
    out_path = Path(sys.argv[2])
    out = run(spec, out_path)
    out_path.write_text(json.dumps(out))
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: a scheduler thread still inside torch at exit can abort the process
    # ("terminate called without an active exception") after every figure is already written.
    os._exit(0)


if __name__ == "__main__":
    main()
