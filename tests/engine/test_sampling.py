"""Each sampling filter on its own, then the composed Sampler."""

from __future__ import annotations

import math

import torch

from smolgate.engine.sampling import (
    Sampler,
    apply_repetition_penalty,
    apply_temperature,
    argmax_rows,
    greedy,
    top_k_filter,
    top_p_filter,
)

INF = float("inf")


def logits_of(probs: list[float]) -> torch.Tensor:
    return torch.tensor([math.log(p) for p in probs])


def kept(logits: torch.Tensor) -> list[int]:
    return torch.nonzero(torch.isfinite(logits)).flatten().tolist()


def test_greedy_is_argmax() -> None:
    assert greedy(torch.tensor([0.1, 3.0, -1.0, 2.9])) == 1


def test_batched_argmax_takes_the_first_of_tied_maxima_like_argmax() -> None:
    """bf16 logits tie often; greedy decoding must pick the same (first) token however the batch is formed."""
    gen = torch.Generator().manual_seed(0)
    for rows in (1, 3, 8):
        x = (torch.randn(rows, 49152, generator=gen) * 2).round().to(torch.bfloat16)  # many ties at the max
        x[:, 40000] = x[:, 7] = x.max() + 1  # a tie far apart
        assert argmax_rows(x).tolist() == [7] * rows
        assert greedy(x[0]) == 7
        x[-1, 99] = float("nan")  # NaN counts as the largest, as in argmax
        assert argmax_rows(x).tolist() == x.argmax(dim=-1).tolist() == [7] * (rows - 1) + [99]


def test_temperature_scales_logits() -> None:
    x = torch.tensor([1.0, -2.0, 4.0])
    assert torch.equal(apply_temperature(x, 0.5), torch.tensor([2.0, -4.0, 8.0]))


def test_top_k_keeps_k_largest() -> None:
    x = torch.tensor([0.5, 3.0, 1.0, 2.0, -1.0])
    assert kept(top_k_filter(x, 2)) == [1, 3]
    assert kept(top_k_filter(x, 0)) == [0, 1, 2, 3, 4]  # disabled
    assert kept(top_k_filter(torch.tensor([1.0, 2.0, 2.0, 0.0]), 2)) == [1, 2]


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    x = logits_of([0.1, 0.5, 0.05, 0.35])
    assert kept(top_p_filter(x, 0.8)) == [1, 3]  # 0.5 + 0.35 >= 0.8
    assert kept(top_p_filter(x, 0.86)) == [0, 1, 3]
    assert kept(top_p_filter(x, 0.01)) == [1]  # always at least the top token
    assert kept(top_p_filter(x, 1.0)) == [0, 1, 2, 3]
    batch = torch.stack([x, x.flip(0)])
    assert [kept(row) for row in top_p_filter(batch, 0.8)] == [[1, 3], [0, 2]]


def test_repetition_penalty_pushes_seen_tokens_down() -> None:
    x = torch.tensor([2.0, -2.0, 2.0, -2.0])
    seen = torch.tensor([True, True, False, False])
    assert torch.equal(apply_repetition_penalty(x, seen, 2.0), torch.tensor([1.0, -4.0, 2.0, -2.0]))


def test_temperature_zero_is_greedy_whatever_the_other_knobs() -> None:
    s = Sampler(temperature=0.0, top_k=3, top_p=0.5, seed=1)
    x = torch.randn(100)
    assert all(s(x, torch.zeros(100, dtype=torch.bool)) == int(x.argmax()) for _ in range(5))
    assert not s.uses_seen and s.generator is None


def test_penalty_can_change_the_greedy_choice() -> None:
    x = torch.tensor([1.0, 0.9, 0.0])
    seen = torch.tensor([True, False, False])
    assert Sampler()(x, seen) == 0
    penalised = Sampler(repetition_penalty=1.5)
    assert penalised.uses_seen and penalised(x, seen) == 1


def test_seeded_sampling_is_reproducible_and_follows_the_distribution() -> None:
    x = logits_of([0.6, 0.3, 0.1])
    none = torch.zeros(3, dtype=torch.bool)
    draws = [Sampler(temperature=1.0, seed=3)(x, none) for _ in range(3)]
    assert len(set(draws)) == 1
    s = Sampler(temperature=1.0, seed=0)
    counts = torch.bincount(torch.tensor([s(x, none) for _ in range(3000)]), minlength=3).float() / 3000
    assert torch.allclose(counts, torch.tensor([0.6, 0.3, 0.1]), atol=0.04)


def test_unseeded_sampling_does_not_follow_torchs_global_random_state() -> None:
    # user code may seed torch's generator, and every torch.compile (the engine's background one too) saves and
    # restores it: unseeded requests drawing their seed from it could repeat each other
    seeds = set()
    for _ in range(4):
        torch.manual_seed(0)
        generator = Sampler(temperature=1.0).generator
        assert generator is not None
        seeds.add(generator.initial_seed())
    assert len(seeds) == 4


def test_filters_compose_in_the_sampler() -> None:
    x = logits_of([0.45, 0.3, 0.15, 0.1])
    none = torch.zeros(4, dtype=torch.bool)
    top2 = Sampler(temperature=1.0, top_k=2, seed=0)
    assert {top2(x, none) for _ in range(300)} == {0, 1}
    nucleus = Sampler(temperature=1.0, top_p=0.7, seed=0)
    assert {nucleus(x, none) for _ in range(300)} == {0, 1}
    cold = Sampler(temperature=0.05, seed=0)  # near-greedy
    assert {cold(x, none) for _ in range(100)} == {0}
