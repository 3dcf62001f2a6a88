"""smolgate: one API endpoint, any AI model — with a vision-language model built in."""

import os

# Process settings for the embedded engine; they must be in the environment before torch is first imported, and
# a user's own values win. SMOLGATE_PROCESS_DEFAULTS=off leaves them all alone (the engine bench runs its
# reference systems, transformers and llama.cpp, that way: as their users would).
# - OMP_WAIT_POLICY=PASSIVE: the engine's OpenMP threads share a small CPU with the event loop (and, on a busy
#   host, with other processes); spinning workers then starve everyone. 2.2B int8 decode on 2 cores with one
#   other busy process: 1.2 tok/s with libgomp's default spin, 6.0 with PASSIVE.
# - SMOLGATE_OMP=spin instead lets idle workers spin briefly (GOMP_SPINCOUNT=30000) before sleeping: on a machine
#   left to the engine that is ~25% faster (9.9 vs 7.9 tok/s), but 3.3 tok/s with one competing process.
# - THP_MEM_ALLOC_ENABLE=1: torch backs big tensors with transparent huge pages (this kernel grants them on
#   madvise only). Decode streams every weight once per token, and with 4 KiB pages the TLB misses cost ~15%
#   (a 2.2B int8 decode step: 117 -> 101 ms).
_WAIT = {"GOMP_SPINCOUNT": "30000"} if os.environ.get("SMOLGATE_OMP") == "spin" else {"OMP_WAIT_POLICY": "PASSIVE"}
PROCESS_DEFAULTS = {**_WAIT, "THP_MEM_ALLOC_ENABLE": "1"}
USER_ENV = {  # as the user started us
    name: os.environ.get(name) for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "THP_MEM_ALLOC_ENABLE")
}
if os.environ.get("SMOLGATE_PROCESS_DEFAULTS") != "off":
    for _name, _value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
