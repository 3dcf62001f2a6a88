"""Process settings for the embedded engine, applied when an engine starts (never by importing smolgate).

`tune_process()` must run before torch is first imported: libgomp reads its settings when torch loads it, and
torch's allocator reads THP_MEM_ALLOC_ENABLE once. LocalProvider.start calls it before importing the engine, and
engine.py calls it at its own import as the fallback for direct users (tests, bench, the CLI). A user's own values
win, and SMOLGATE_PROCESS_DEFAULTS=off leaves them all alone (the engine bench runs its reference systems,
transformers and llama.cpp, that way: as their users would).

- GOMP_SPINCOUNT=30000: idle OpenMP workers spin briefly, then sleep. A decode step is hundreds of short parallel
  ops back to back, and waking a sleeping worker for each costs more than the spin; libgomp's default spin (10x
  longer) starves everyone else once other work wants the cores (figures: docs/performance.md).
- SMOLGATE_OMP=passive selects OMP_WAIT_POLICY=PASSIVE instead: for hosts where other processes keep the cores busy.
- THP_MEM_ALLOC_ENABLE=1: torch backs big tensors with transparent huge pages (granted on madvise only on many
  kernels). Decode streams every weight once per token, and with 4 KiB pages the TLB misses cost.
"""

from __future__ import annotations

import os

NAMES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "THP_MEM_ALLOC_ENABLE")
# The environment as the user started us, before any tuning (the bench gives its reference systems this).
USER_ENV: dict[str, str | None] = {name: os.environ.get(name) for name in NAMES}


def process_defaults() -> dict[str, str]:
    """The settings tune_process applies (unless the user set them)."""
    passive = os.environ.get("SMOLGATE_OMP") == "passive"
    return {
        **({"OMP_WAIT_POLICY": "PASSIVE"} if passive else {"GOMP_SPINCOUNT": "30000"}),
        "THP_MEM_ALLOC_ENABLE": "1",
    }


def tune_process() -> None:
    """Put the engine's process defaults into os.environ (idempotent; see the module docstring for when)."""
    if os.environ.get("SMOLGATE_PROCESS_DEFAULTS") == "off":
        return
    for name, value in process_defaults().items():
        os.environ.setdefault(name, value)
