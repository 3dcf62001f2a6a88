"""Several LoRA adapters in one continuous batch: every row gets what it gets alone with its own adapter (or
none), through the real scheduler (grouped text prefill, chunked image prefill, mixed decode steps) and through
Engine.stream with adapters loaded and unloaded by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from checkpoints import make_checkpoint
from test_batching import result, run, submit
from test_lora_parity import TEXT, VISION, make_adapter
from test_model_parity import picture

from smolgate.engine import generate as gen
from smolgate.engine.api import InputInvalid
from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, ImagePart, TextPart
from smolgate.engine.lora.attach import serving
from smolgate.engine.sampling import Sampler
from smolgate.engine.scheduler import Limits, Scheduler


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    torch.set_num_threads(2)
    tmp = tmp_path_factory.mktemp("lora-batching")
    path, ref = make_checkpoint("smolvlm2-256m", tmp / "base")
    engine = Engine.load(str(path))
    engine.load_adapter("text", make_adapter(ref, tmp / "text", 1, target_modules=TEXT, r=4, lora_alpha=8))
    engine.load_adapter("eyes", make_adapter(ref, tmp / "eyes", 2, target_modules=VISION, r=4, lora_alpha=8))
    return engine


def messages(text: str, image_seed: int | None = None) -> list[ChatMessage]:
    parts: list[Any] = [ImagePart(picture(90, 70, image_seed))] if image_seed is not None else []
    return [ChatMessage("user", [*parts, TextPart(text)])]


# (messages, adapter): text and image prompts, each with no adapter, the text one, the vision one
CASES: list[tuple[list[ChatMessage], str | None]] = [
    (messages("Hello there, how are you?"), None),
    (messages("Hello there, how are you?"), "text"),
    (messages("Name three colours."), "eyes"),  # a vision adapter on a text prompt: the base model's answer
    (messages("What is shown?", 1), "eyes"),
    (messages("What is shown?", 1), None),
    (messages("What is shown?", 1), "text"),
    (messages("Describe it.", 2), "eyes"),
]


def test_mixed_adapter_batch_equals_each_alone(engine: Engine) -> None:
    adapters = serving(engine.scheduler)
    prepared = [(engine._prepare(m), adapters.slot(a)) for m, a in CASES]

    def go(sched: Scheduler, i: int) -> Any:
        (ids, pixels), slot = prepared[i]
        return submit(sched, ids, pixel_values=pixels, sampler=Sampler(), max_tokens=10, adapter=slot)

    sched = Scheduler(engine.model, engine.tokenizer, Limits(step_tokens=64))
    sched.adapters = adapters
    alone: list[gen.GenerationResult] = []
    for i in range(len(CASES)):
        stream = go(sched, i)
        run(sched)
        alone.append(result(stream))
    streams = [go(sched, i) for i in range(len(CASES))]
    run(sched)
    together = [result(s) for s in streams]
    assert sched.peak_batch >= 4  # rows with different adapters really shared decode steps
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    # the adapters really act: each changes its own kind of prompt's answer, and only that
    assert alone[1].token_ids != alone[0].token_ids and alone[5].token_ids != alone[4].token_ids
    assert alone[3].token_ids != alone[4].token_ids
    base_alone = go(sched, 2)
    run(sched)
    assert result(base_alone).token_ids == alone[2].token_ids


def test_mixed_rows_logits_equal_unbatched(engine: Engine) -> None:
    """One batched forward with rows on different adapters equals each row's own pass (fp32 tolerance)."""
    adapters, model = serving(engine.scheduler), engine.model
    torch.manual_seed(0)
    ids = torch.randint(100, 5000, (3, 9))
    selection = [adapters.slot("text"), -1, adapters.slot("eyes")]
    with torch.inference_mode():
        with adapters.rows(selection):
            batched = model(model.embed(ids), last_only=False)
        for i, slot in enumerate(selection):
            with adapters.rows(slot):
                alone = model(model.embed(ids[i : i + 1]), last_only=False)[0]
            assert (batched[i] - alone).abs().max().item() <= 1e-5


def test_load_and_unload_by_name_through_the_engine(engine: Engine, tmp_path: Path) -> None:
    params = GenerationParams(max_tokens=6, adapter="text")
    with_text = engine.generate(messages("Hi!"), params)
    with pytest.raises(InputInvalid, match="no LoRA adapter named 'gone'"):
        engine.generate(messages("Hi!"), GenerationParams(adapter="gone"))
    engine.unload_adapter("text")
    with pytest.raises(InputInvalid):
        engine.generate(messages("Hi!"), params)
    assert engine.generate(messages("Hi!"), GenerationParams(max_tokens=6)).token_ids != with_text.token_ids


def test_unloading_an_adapter_in_use_lets_its_requests_finish_with_it(engine: Engine, tmp_path: Path) -> None:
    """A response never changes model halfway: requests admitted before the unload finish with the adapter,
    new ones are refused, and its weights go when the last of its requests ends."""
    _, ref = make_checkpoint("smolvlm2-256m", tmp_path / "ref")
    engine.load_adapter(
        "brief", make_adapter(ref, tmp_path / "brief", 3, target_modules=TEXT, r=4, lora_alpha=8)
    )
    question = messages("Tell me a long story, please.")
    params = GenerationParams(max_tokens=24, adapter="brief")
    whole = engine.generate(question, params).token_ids
    assert engine.generate(question, GenerationParams(max_tokens=24)).token_ids != whole  # the adapter acts
    adapters = serving(engine.scheduler)
    slot = adapters.slot("brief")

    stream = iter(engine.stream(question, params))
    first = next(stream)  # decoding with the adapter now
    engine.unload_adapter("brief")
    with pytest.raises(InputInvalid):
        engine.generate(question, params)
    assert slot in adapters.retired  # kept while its request runs
    rest = list(stream)
    assert [t for chunk in (first, *rest) for t in chunk.token_ids] == whole
    engine.run(
        lambda: None
    )  # one more scheduler step (it frees before it runs the job): no request uses it now
    assert slot not in adapters.retired
    assert not any(slot in w.a for w in adapters.wrappers())
