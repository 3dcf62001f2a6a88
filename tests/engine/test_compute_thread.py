"""All model compute runs on the engine's one compute thread; the threads that call it stay free of torch work.

Why it matters (scheduler.py): a thread that runs one OpenMP-parallel torch op keeps a worker pool for as long as
it lives, and while a second pool exists the compute thread's parallel ops ran ~1.6x slower on this 2-core CPU.
A server calls the engine from long-lived executor threads, so one stray op there would slow every decode step
for good. A new pool shows as a new OS thread, which is what these tests watch.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from checkpoints import make_checkpoint
from PIL import Image

from smolgate.engine import compute
from smolgate.engine.api import EngineRequest
from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, ImagePart, TextPart

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads via Linux /proc")


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def test_requests_run_model_work_on_the_compute_thread_only(tmp_path):
    torch.set_num_threads(2)
    path, _ = make_checkpoint("smolvlm2-256m", tmp_path / "tiny")
    engine = Engine.load(str(path))
    vision_threads: list[str] = []
    assert engine.model.vision is not None
    engine.model.vision.register_forward_pre_hook(
        lambda *_: vision_threads.append(threading.current_thread().name)
    )
    question = [ChatMessage("user", [TextPart("Describe the picture in a few words, please.")])]
    engine.generate(question, GenerationParams(max_tokens=4))  # the compute thread and its pool now exist

    counts: dict[str, int] = {}
    errors: list[BaseException] = []

    def caller() -> None:  # a fresh thread, like a server's executor thread
        try:
            counts["before"] = os_threads()
            # a text request with a penalty (its token mask), a seeded sample, and a 3x2-tile image request
            engine.generate(question, GenerationParams(max_tokens=6, repetition_penalty=1.3))
            engine.generate(question, GenerationParams(max_tokens=6, temperature=0.8, seed=3))
            image = [ChatMessage("user", [ImagePart(png((900, 600))), TextPart("What is it?")])]
            engine.generate(image, GenerationParams(max_tokens=6))
            counts["after"] = os_threads()
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join()
    engine.close()
    if errors:
        raise errors[0]
    assert vision_threads and set(vision_threads) == {"smolgate-decode"}
    assert counts["after"] <= counts["before"], "the calling thread started an OpenMP pool"


def test_async_submit_prepares_off_the_loop_without_a_second_pool(tmp_path):
    """`Engine.submit` prepares prompts (tokens, image tiles) in an executor thread, off the event loop, and
    that thread, like any caller's, starts no OpenMP pool."""
    torch.set_num_threads(2)
    path, _ = make_checkpoint("smolvlm2-256m", tmp_path / "tiny")
    engine = Engine.load(str(path))
    question = [ChatMessage("user", [TextPart("Describe the picture in a few words, please.")])]
    image = [ChatMessage("user", [ImagePart(png((900, 600))), TextPart("What is it?")])]

    engine.generate(question, GenerationParams(max_tokens=4))  # the compute thread and its pool now exist

    async def main() -> dict[str, int]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        await loop.run_in_executor(None, lambda: None)  # the executor's one thread exists, having run nothing
        counts = {}

        async def ask(messages: list[ChatMessage], **kw: object) -> None:
            async for _ in await engine.submit(EngineRequest(messages, max_tokens=6, **kw)):  # type: ignore[arg-type]
                pass

        counts["before"] = os_threads()
        await ask(question)
        await ask(question, repetition_penalty=1.3)
        await ask(question, temperature=0.8, seed=3)
        await ask(image)
        counts["after"] = os_threads()
        return counts

    counts = asyncio.run(main())
    engine.close()
    assert counts["after"] <= counts["before"], "preparing a request started an OpenMP pool"


def test_run_executes_on_the_compute_thread_and_raises_there_errors_here(tmp_path):
    path, _ = make_checkpoint("smollm2-text", tmp_path / "tiny")
    engine = Engine.load(str(path))
    assert engine.run(lambda: threading.current_thread().name) == "smolgate-decode"
    assert engine.run(lambda: torch.is_inference_mode_enabled())

    def boom() -> None:
        raise ValueError("bad job")

    with pytest.raises(ValueError, match="bad job"):
        engine.run(boom)
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.run(lambda: 1)


def test_two_models_share_the_compute_thread_and_each_closes_alone(tmp_path):
    """Two engines in one process (a gateway serving two local models) step on one compute thread: a second
    decode thread would bring a second OpenMP pool, which slowed the first model's decode ~2.3x while idle
    (docs/performance.md). Closing one ends its requests only; the thread ends with the last model."""
    torch.set_num_threads(2)
    text, _ = make_checkpoint("smollm2-text", tmp_path / "text")
    vlm, _ = make_checkpoint("smolvlm2-256m", tmp_path / "vlm")
    question = [ChatMessage("user", [TextPart("Say something about the sea, please.")])]
    first = Engine.load(str(text))
    first.generate(question, GenerationParams(max_tokens=3))  # the compute thread and its pool now exist
    before = os_threads()
    second = Engine.load(str(vlm))
    image = [ChatMessage("user", [ImagePart(png((300, 200))), TextPart("What is it?")])]
    assert second.generate(image, GenerationParams(max_tokens=4)).completion_tokens > 0
    assert first.run(threading.get_ident) == second.run(threading.get_ident)
    assert os_threads() <= before, "the second model started a thread (and an OpenMP pool) of its own"

    # both at once, interleaved on the one thread: each answer is what it is alone
    alone = [e.generate(question, GenerationParams(max_tokens=8)).token_ids for e in (first, second)]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda e: e.generate(question, GenerationParams(max_tokens=8)).token_ids,
                                 (first, second)))  # fmt: skip
    assert together == alone

    second.close()
    assert first.generate(question, GenerationParams(max_tokens=3)).completion_tokens > 0
    with pytest.raises(RuntimeError, match="closed"):
        second.run(lambda: 1)
    first.close()
    assert not any(m in compute._members for m in (first.scheduler, second.scheduler))
    if not compute._members:  # no other test's engine left open in this process: the thread ends too
        deadline = time.monotonic() + 5
        while (
            any(t.name == compute.THREAD_NAME for t in threading.enumerate()) and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        assert not any(t.name == compute.THREAD_NAME for t in threading.enumerate()), "the thread outlived us"


class _Member:
    """A stand-in scheduler for the compute thread (compute.Member): `work` steps to do; `boom` makes each step
    raise, and failing its requests raise too (a sink whose event loop has closed)."""

    def __init__(self, boom: bool) -> None:
        self.boom, self.work, self.steps, self.shut = boom, 0, 0, False

    @property
    def busy(self) -> bool:
        return self.work > 0

    @property
    def closed(self) -> bool:
        return self.shut

    def idle(self) -> None:
        pass

    def step(self) -> None:
        self.work -= 1
        self.steps += 1
        if self.boom:
            raise RuntimeError("the forward failed")

    def fail(self, exc: BaseException) -> None:
        raise RuntimeError("its event loop is closed")

    def finish(self) -> None:
        raise RuntimeError("its event loop is closed")


def test_a_model_whose_requests_cannot_be_failed_does_not_stop_the_others() -> None:
    bad, good = _Member(boom=True), _Member(boom=False)
    for m in (bad, good):
        compute.join(m)
    with compute.LOCK:
        bad.work = good.work = 3
        compute.WAKE.notify_all()
    deadline = time.monotonic() + 10
    while (good.steps < 3 or bad.steps < 3) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (bad.steps, good.steps) == (3, 3)
    for m in (bad, good):
        with compute.LOCK:
            m.shut = True
        compute.leave(m)  # returns: the thread finished both, the raising one included
    assert not any(m in compute._members for m in (bad, good))
