"""smolgate: one API endpoint, any AI model — with a vision-language model built in."""

import os

# The engine's OpenMP threads share a small CPU with the event loop (and, on a busy host, with other
# processes): busy-waiting workers then starve everyone — measured here, decode fell from 9.4 to 0.9 tok/s
# on 2 loaded cores. Sleep instead of spin. Must be set before torch is first imported; users can override.
# SMOLGATE_OMP_WAIT_POLICY=inherit leaves the OpenMP default alone (the engine bench runs its reference
# systems, transformers and llama.cpp, that way: as their users would).
USER_OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")
if os.environ.get("SMOLGATE_OMP_WAIT_POLICY") != "inherit":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Ask torch to back big tensors with transparent huge pages (this kernel grants them on madvise only): decode
# streams every weight once per token, and with 4 KiB pages the TLB misses cost ~15% (2.2B int8 step: 117 ->
# 101 ms). Read by torch at its first large allocation.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
