"""The text decoder's projections as `GemvLinear`: a few bf16 rows run with the weight as the GEMM's left operand.

For bf16 at 1-16 rows (decode), torch's `F.linear` (x @ W^T) gets a slow oneDNN decomposition; the same product
computed as W @ x^T (then transposed) gets a faster one with the same values: fp32 sums, one rounding.
- one row: `torch.mv` (also inside the compiled one-row decode graph);
- 2-16 rows (batched decode): `W @ x^T`. In a compiled step the row count is symbolic and this branch guards on
  it, so with more than FEW_ROWS slots warm-up also traces a batch past it (compiled.py).
Other dtypes (fp16's GEMV rounds differently), biased layers past one row, and prefill keep `F.linear`.
Figures: docs/performance.md, "bf16 GEMV".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEW_ROWS = 16  # up to here W @ x^T; 32 rows is a toss-up, and from 64 on oneDNN's kernels give other values


class GemvLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16:
            if x.numel() == x.shape[-1]:
                v = x.reshape(-1)
                y = torch.mv(self.weight, v) if self.bias is None else torch.addmv(self.bias, self.weight, v)
                return y.view(*x.shape[:-1], self.out_features)
            rows = x.numel() // x.shape[-1]
            if self.bias is None and rows <= FEW_ROWS:
                y = torch.mm(self.weight, x.reshape(rows, self.in_features).t()).t().contiguous()
                return y.view(*x.shape[:-1], self.out_features)
        return F.linear(x, self.weight, self.bias)


def gemv_linear(linear: nn.Linear) -> GemvLinear:
    """The same layer (same parameter tensors, no copy) as a GemvLinear."""
    layer = GemvLinear(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
    layer.weight = linear.weight
    layer.bias = linear.bias
    return layer


def swap_text_linears(root: nn.Module) -> int:
    """Every plain `nn.Linear` under `root` becomes a GemvLinear, in place -> how many (quantized layers stay)."""
    targets = [(name, m) for name, m in root.named_modules() if type(m) is nn.Linear]
    for name, linear in targets:
        parent, _, attr = name.rpartition(".")
        setattr(root.get_submodule(parent) if parent else root, attr, gemv_linear(linear))
    return len(targets)
