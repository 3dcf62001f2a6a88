"""smolgate: one API endpoint, any AI model — with a vision-language model built in."""

import os

# Process settings for the embedded engine; they must be in the environment before torch is first imported, and
# a user's own values win. SMOLGATE_PROCESS_DEFAULTS=off leaves them all alone (the engine bench runs its
# reference systems, transformers and llama.cpp, that way: as their users would).
# - GOMP_SPINCOUNT=30000: idle OpenMP workers spin briefly, then sleep. A decode step is hundreds of short
#   parallel ops back to back, and waking a sleeping worker for each costs: on an idle 2-core machine, 256M bf16
#   decode 30.3 tok/s spinning vs 16.4 sleeping (OMP_WAIT_POLICY=PASSIVE), 2.2B int8 9.9 vs 7.9. libgomp's
#   default spin (10x longer) starves everyone once other work wants the cores: 2.2B int8 with one competing
#   busy process 1.2 tok/s, 3.3 with this setting, 6.0 with PASSIVE.
# - SMOLGATE_OMP=passive selects PASSIVE instead: for hosts where other processes keep the cores busy.
# - THP_MEM_ALLOC_ENABLE=1: torch backs big tensors with transparent huge pages (this kernel grants them on
#   madvise only). Decode streams every weight once per token, and with 4 KiB pages the TLB misses cost ~15%
#   (a 2.2B int8 decode step: 117 -> 101 ms).
_PASSIVE = os.environ.get("SMOLGATE_OMP") == "passive"
PROCESS_DEFAULTS = {
    **({"OMP_WAIT_POLICY": "PASSIVE"} if _PASSIVE else {"GOMP_SPINCOUNT": "30000"}),
    "THP_MEM_ALLOC_ENABLE": "1",
}
USER_ENV = {  # as the user started us
    name: os.environ.get(name) for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "THP_MEM_ALLOC_ENABLE")
}
if os.environ.get("SMOLGATE_PROCESS_DEFAULTS") != "off":
    for _name, _value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
