"""The options every engine `torch.compile` passes: inductor's vector width pinned to the one it uses here.

Inductor writes C++ for the vector ISA it picks at run time (AVX-512: 16 floats a vector, AVX2: 8; the choice
follows the CPU and ATEN_CPU_CAPABILITY). Its on-disk FX graph cache keys a graph on the inductor config but
not on that ISA (torch 2.13), so a cache filled on an AVX-512 machine (or in a process without
ATEN_CPU_CAPABILITY=avx2) hands 16-lane source to an AVX2 build: measured, a compiled bf16 GEMV then returned
NaN and 1e38 values. With `cpp.simdlen` set to the picked ISA's width the width is part of the config, so each
ISA gets its own cache entries; the ISA picked is the same one inductor picks without it. Without a vector ISA
(ATEN_CPU_CAPABILITY=default, or no AVX2) the width is 0: inductor's plain C++, under its own entries too (the
AVX-512 source would not even compile there).
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _simdlen() -> int | None:
    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa

        return int(pick_vec_isa().bit_width())  # 0: no vector ISA (simdlen 0 picks none, too)
    except Exception:  # a torch without this module: inductor's own default
        return None


def options(**extra: Any) -> dict[str, Any]:
    """`options=` for torch.compile: `extra` plus the vector width inductor uses on this CPU."""
    simdlen = _simdlen()
    return dict(extra) if simdlen is None else {**extra, "cpp.simdlen": simdlen}
