"""Row-split bf16 GEMMs (engine.kernels.rowsplit): same result either way, each shape measured once, split only when it
pays, and a bf16 vision model's tile shapes measured at load, not in a request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from smolgate.engine.kernels import rowsplit


@pytest.fixture
def decisions(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[tuple[int, int, int], bool]]:
    table: dict[tuple[int, int, int], bool] = {}
    monkeypatch.setattr(rowsplit, "_split", table)
    yield table


def operands(m: int, k: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(m + k + n)
    bf = torch.bfloat16
    return torch.randn(m, n, dtype=bf), torch.randn(m, k, dtype=bf), torch.randn(n, k, dtype=bf) / k**0.5


@pytest.mark.parametrize("split", [True, False])
def test_either_way_gives_residual_plus_the_product(split: bool, decisions: dict, monkeypatch) -> None:
    residual, x, w = operands(600, 96, 80)  # odd halves: 300 + 300 rows; 601 would be 300 + 301
    probes: list[tuple[int, int, int]] = []

    def probe(r: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> bool:
        probes.append((a.shape[0], a.shape[1], b.shape[0]))
        return split

    monkeypatch.setattr(rowsplit, "_probe", probe)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    got = [rowsplit.addmm(residual, x, w) for _ in range(2)]
    odd = rowsplit.addmm(*operands(601, 96, 80))
    assert probes == [(600, 96, 80), (601, 96, 80)]  # each shape measured once
    assert decisions == {(600, 96, 80): split, (601, 96, 80): split}
    ref = residual.float() + x.float() @ w.float().t()
    for out in got:
        assert out.dtype == torch.bfloat16 and out.shape == (600, 80)
        torch.testing.assert_close(out.float(), ref, rtol=0.02, atol=0.05)
    r2, x2, w2 = operands(601, 96, 80)
    torch.testing.assert_close(odd.float(), r2.float() + x2.float() @ w2.float().t(), rtol=0.02, atol=0.05)


def test_small_or_single_threaded_gemms_are_never_measured(decisions: dict, monkeypatch) -> None:
    monkeypatch.setattr(rowsplit, "_probe", lambda *a: pytest.fail("measured"))
    rowsplit.addmm(*operands(rowsplit.MIN_ROWS - 1, 64, 64))
    rowsplit.addmm(*operands(rowsplit.MAX_ROWS + 1, 8, 8))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    rowsplit.addmm(*operands(rowsplit.MIN_ROWS, 64, 64))
    assert decisions == {}


@pytest.mark.parametrize(
    ("whole", "halves", "split"), [(1.0, 0.5, True), (1.0, 0.79, True), (1.0, 0.9, False)]
)
def test_the_probe_splits_only_when_halves_are_clearly_faster(
    whole: float, halves: float, split: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each round times the whole GEMM then the halves; the best round of each decides (SPLIT_GAIN = 0.8)."""
    clock = iter(
        t for r in range(8) for t in (10.0 * r, 10.0 * r + whole + r, 10.0 * r + whole + halves + 2 * r)
    )
    monkeypatch.setattr(rowsplit.time, "perf_counter", lambda: next(clock))
    assert rowsplit._probe(*operands(512, 16, 16)) is split


def test_a_bf16_vision_model_measures_its_tile_shapes_at_load(
    decisions: dict, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from checkpoints import make_checkpoint

    from smolgate.engine.engine import Engine

    path, _ = make_checkpoint("smolvlm2-256m", tmp_path_factory.mktemp("rowsplit"))
    monkeypatch.setattr(rowsplit, "MIN_ROWS", 1)  # the tiny model's tiles have a few dozen patches
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    engine = Engine.load(str(path), dtype="bfloat16")
    vision = engine.model.vision
    assert vision is not None
    seq = -(-vision.cfg.num_patches // 16) * 16  # padded for attention in bf16
    hidden = vision.cfg.hidden_size
    want = {(t * seq, k, hidden) for t in (1, 2) for k in (hidden, vision.cfg.intermediate_size)}
    assert set(decisions) == want  # out_proj and fc2, at one and two tiles
    engine.close()
