"""Comparisons of float results that hold on any x86-64 CPU.

Which kernel runs a product is decided at run time by the CPU: oneDNN and MKL pick AMX, AVX-512 with or without
native bf16, or AVX2 code; ATen and inductor vectorise 8 or 16 floats wide. Two kernels for the same product may
add in different orders, so their fp32 sums differ in the last bits, and a bf16 result (one rounding of an fp32
sum) then differs by an ulp now and then. Hence:
- bit-exactness only where one kernel runs on the same operands in the same order (the same layer at the same
  shape twice, elementwise code, exact integer sums); `torch.equal` there;
- `assert_bf16_close` where two bf16 kernels compute the same sums in different orders;
- greedy tokens from two computations (batched / alone, compiled / eager, ours / transformers) are only equal if
  at every step the winner stands clear of the runner-up by more than the two computations' noise:
  `assert_decisive` checks that of the reference, so a token-equality test cannot pass on one CPU and fail on
  another. A random model has a near-tie every few hundred steps; when one shows up, pick another prompt.
"""

from __future__ import annotations

from typing import Any

import torch

# Two fp32 computations of the same logits (another batch size, kernel, fused graph, or transformers) agree to a
# few 1e-6 on these tiny models (logits up to ~5; measured 3.5e-6 between prefill and decode steps), and the tests
# comparing logits allow 1e-4. Two sets of logits each within 1e-4 of the truth cannot swap a pair that is more
# than 2e-4 apart.
FP32_TIE = 2e-4


def bf16_ulps(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """|got - want| in ulps of bf16 at want's magnitude, per element.

    Entries far below the tensor's largest (|want| < max / 256) are measured in ulps at max / 256: they come
    from cancelling sums, whose error is set by the magnitude of the terms, not by the small result."""
    want = want.float()
    floor = want.abs().max().clamp(min=torch.finfo(torch.float32).tiny) / 256
    _, exponent = torch.frexp(want.abs().clamp(min=floor))  # |w| = m * 2**e, m in [0.5, 1)
    ulp = torch.ldexp(torch.ones_like(want), exponent - 8)  # bf16: 8 significant bits
    return (got.float() - want).abs() / ulp


def assert_bf16_close(got: torch.Tensor, want: torch.Tensor, ulps: float = 2) -> None:
    """got equals want up to `ulps` bf16 ulps per element: fp32 sums in another order, rounded to bf16 (one ulp),
    maybe a second rounding (a bias added after the product). A wrong product is off by far more."""
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.numel() == 0:
        return
    off = bf16_ulps(got, want)
    worst = int(off.argmax())
    assert off.max().item() <= ulps, (
        f"{off.max().item():.2f} bf16 ulps apart at flat index {worst} "
        f"({got.flatten()[worst].item()} vs {want.flatten()[worst].item()}); "
        f"{int((off > ulps).sum())} of {off.numel()} entries beyond {ulps}"
    )


def assert_decisive(logits: torch.Tensor, tokens: list[int], min_gap: float = FP32_TIE) -> None:
    """logits [T, V] of the reference at each greedy step, tokens its T picks: each pick is the argmax and leads
    the runner-up by at least min_gap, so any computation within noise of the reference picks the same tokens."""
    assert logits.shape[0] == len(tokens), (logits.shape, len(tokens))
    logits, picks = logits.float(), torch.tensor(tokens).view(-1, 1)
    lead = logits.gather(1, picks)[:, 0] - logits.scatter(1, picks, float("-inf")).amax(dim=1)
    step = int(lead.argmin())
    assert lead[step].item() >= min_gap, (
        f"step {step}: the pick leads the best other token by {lead[step].item():.2e} < {min_gap:.0e} (below 0: "
        "not the argmax at all); near a tie another computation may pick the other token on another CPU, so "
        "this comparison would not be portable: change the prompt"
    )


@torch.inference_mode()
def teacher_forced_logits(
    model: torch.nn.Module, ids: torch.Tensor, tokens: list[int], pixels: torch.Tensor | None = None
) -> torch.Tensor:
    """The logits [len(tokens), V] `model` (a SmolVLM) gives before each of `tokens`, after the prompt ids [1, P]:
    one prefill pass over prompt + tokens (call it on the thread that owns the model)."""
    full = torch.cat([ids, torch.tensor([tokens], dtype=ids.dtype)], dim=1)
    logits = model(model.embed(full, pixels), 0, last_only=False)[0]  # type: ignore[operator]
    return logits[ids.shape[1] - 1 : -1]


def assert_greedy_is_decisive(
    model: torch.nn.Module,
    ids: torch.Tensor,
    tokens: list[int],
    *,
    repetition_penalty: float = 1.0,
    pixels: torch.Tensor | None = None,
    min_gap: float = FP32_TIE,
) -> None:
    """`tokens`, greedy picks of `model` after the prompt `ids`, each lead their runner-up by min_gap (with the
    repetition penalty applied as the sampler does: prompt and earlier picks count as seen)."""
    from smolgate.engine.sampling import apply_repetition_penalty

    logits = teacher_forced_logits(model, ids, tokens, pixels).float()
    if repetition_penalty != 1.0:
        seen = torch.zeros(logits.shape[-1], dtype=torch.bool)
        seen[ids.flatten()] = True
        steps = []
        for row, token in zip(logits, tokens, strict=True):
            steps.append(apply_repetition_penalty(row, seen, repetition_penalty))
            seen[token] = True
        logits = torch.stack(steps)
    assert_decisive(logits, tokens, min_gap)


def assert_answer_is_decisive(
    engine: Any, messages: Any, tokens: list[int], min_gap: float = FP32_TIE
) -> None:
    """`assert_greedy_is_decisive` for an Engine's greedy answer to `messages`, on its compute thread."""
    ids, pixels = engine._prepare(messages)
    engine.run(lambda: assert_greedy_is_decisive(engine.model, ids, tokens, pixels=pixels, min_gap=min_gap))
