"""GGML's 4-bit block formats read straight into int4 codes (quant.Int4Codes), without going through float weights.

Q4_0 and Q4_1 are groups of 32 weights along K, each block a float16 scale `d` (Q4_1: and a float16 minimum `m`)
then 16 bytes of codes: byte j holds weight j in its low nibble and weight j + 16 in its high one.
Q4_0: w = d * (q - 8); Q4_1: w = d * q + m. Our int4 kernel's groups are the same 32 weights with
w = (q - 8) * scale + zero, so the codes carry over unchanged: scale = d, zero = 0 (Q4_0) or m + 8 d (Q4_1).
The one loss is the kernel's bf16 scale and zero (GGML's are float16).
"""

from __future__ import annotations

import numpy as np
import torch
from gguf import GGMLQuantizationType

from .quant import Int4Codes

GROUP = 32
_HEADER = {GGMLQuantizationType.Q4_0: 2, GGMLQuantizationType.Q4_1: 4}  # bytes before each block's codes
NATIVE_INT4 = frozenset(_HEADER)


def q4_codes(data: np.ndarray, kind: GGMLQuantizationType, dtype: torch.dtype) -> Int4Codes:
    """A Q4_0 / Q4_1 tensor's raw blocks, uint8 [N, blocks * block bytes], as int4 codes [N, K]."""
    header = _HEADER[kind]
    n = data.shape[0]
    blocks = np.ascontiguousarray(data).reshape(n, -1, header + GROUP // 2)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)  # [N, K/32]
    qs = blocks[..., header:]  # [N, K/32, 16]
    codes = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).reshape(n, -1)
    if kind == GGMLQuantizationType.Q4_1:
        zero = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32) + 8 * d
    else:
        zero = np.zeros_like(d)
    return Int4Codes(torch.from_numpy(codes), torch.from_numpy(d), torch.from_numpy(zero), dtype)
