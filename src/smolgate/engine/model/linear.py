"""The text decoder's Linear: bf16 products of a few rows run with the weight as the GEMM's left operand.

Decoding multiplies each weight by one row per sequence in the batch. For bf16 at 1-16 rows, torch's `F.linear`
(x @ W^T) gets a oneDNN decomposition that moves only ~18-26 GB/s here. The same product computed as W @ x^T
(then transposed) gets a better one, with the same values: fp32 sums, one rounding, bit-identical in our checks
up to 32 rows (from 64 rows on, oneDNN picks other kernels for W @ x^T, and they differ).
- one row: `torch.mv`, 20-50% faster per layer (SmolLM2's 49152 x 576 lm_head: 3.6 -> 1.9 ms). Decode with
  bf16 weights: 256M 33.5 -> 39.5 tok/s, 2.2B 5.7 -> 6.9 (one run, same process). The compiled one-row decode
  graph takes it too (256M with --compile: 39.1 -> 41.8 tok/s).
- 2-16 rows (batched decode): `W @ x^T`, 10-40% faster per layer (8 rows: 2048 x 2048 326 -> 237 us, the lm_head
  3.96 -> 2.51 ms); 256M, 8 streams: eager 190 -> 214 tok/s, compiled 255 -> 294. In a compiled step the row
  count is symbolic and this branch guards on it, so with more than FEW_ROWS slots warm-up also traces a batch
  past it (compiled.py).
Other dtypes (fp16's GEMV rounds differently), biased layers past one row, and prefill keep `F.linear`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEW_ROWS = 16  # up to here W @ x^T; 32 rows is a toss-up, and from 64 the values differ


class Linear(nn.Linear):
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
