"""The CPU the engine runs on, and the compute dtype and quantization it defaults to there.

bf16 is fast only where the CPU multiplies it natively (AVX-512 BF16, AMX): elsewhere oneDNN emulates it, the
issue-20 machine (plain AVX-512) served ~2x faster in float32, and here a float32 prompt ran 1.3x (AVX-512) to 3.5x
(AVX2) faster than bf16 with oneDNN capped to those ISAs. So `choose` picks bf16 only with native bf16,
float32 otherwise, and the integer kernels where the checkpoint's own weights are already that coarse (a Q4 / Q8
GGUF: int4 / int8 lose nothing the file had not lost, and decode fastest where they have vector code; README,
"Choosing speed vs accuracy on your CPU"). A full-precision checkpoint is never quantized by default: no
quantized mode reaches the 0.98 top-1 agreement asked of a default (bench/quant_accuracy.py).

`detect()` reads the features once: /proc/cpuinfo's flags (else torch's cpuinfo probes), less what
ONEDNN_MAX_CPU_ISA hides from oneDNN (which runs the bf16 and int8 GEMMs) and ATEN_CPU_CAPABILITY from ATen (the
weight-only int kernels), so a capped process defaults as the capped CPU would. `choose` is pure: tests feed it any CPU's features.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Dtype = Literal["float32", "bfloat16", "float16"]  # auto picks one of the first two
Quant = Literal["none", "int8", "int8-dynamic", "int4"]
# How a checkpoint stores its linear weights: full precision (safetensors, F16/BF16/F32 GGUF) or quantized
Stored = Literal["full", "q8", "q4"]

# Our names for the features that decide, and the /proc/cpuinfo flags that mean each one
FLAGS: dict[str, tuple[str, ...]] = {
    "avx2": ("avx2",),
    "avx512": ("avx512f", "avx512bw", "avx512vl", "avx512dq"),  # oneDNN's avx512_core: all four
    "vnni": ("avx512_vnni",),  # int8 dot products on 512-bit vectors
    "avx_vnni": ("avx_vnni",),  # the same on 256-bit vectors (client CPUs without AVX-512)
    "bf16": ("avx512_bf16",),  # native bf16 dot products
    "amx": ("amx_tile", "amx_bf16", "amx_int8"),  # tile matrix units: bf16 and int8
}
# The oneDNN ISA each feature needs, as dnnl_cpu_isa_t bit masks: a feature survives ONEDNN_MAX_CPU_ISA=X when
# its mask is inside X's. Names oneDNN accepts, with their masks (oneDNN's dnnl_types.h).
_ISA_MASKS = {
    "SSE41": 0x1,
    "AVX": 0x3,
    "AVX2": 0x7,
    "AVX2_VNNI": 0xF,
    "AVX2_VNNI_2": 0x1F,
    "AVX512_CORE": 0x27,
    "AVX512_CORE_VNNI": 0x67,
    "AVX512_CORE_BF16": 0xE7,
    "AVX512_CORE_FP16": 0x1EF,
    "AVX10_1_512": 0x1EF,
    "AVX512_CORE_AMX": 0xFEF,
    "AVX10_1_512_AMX": 0xFEF,
    "AVX512_CORE_AMX_FP16": 0x1FEF,
    "AVX10_1_512_AMX_FP16": 0x1FEF,
}
_NEEDS = {"avx2": 0x7, "avx_vnni": 0xF, "avx512": 0x27, "vnni": 0x67, "bf16": 0xE7, "amx": 0xFEF}


@dataclass(frozen=True, slots=True)
class CpuFeatures:
    name: str  # the model name, as /proc/cpuinfo says it
    features: frozenset[str]  # keys of FLAGS this process can use
    capped: str | None = None  # the environment that hid some of them (ONEDNN_MAX_CPU_ISA=...)

    @property
    def native_bf16(self) -> bool:
        return "bf16" in self.features or "amx" in self.features

    def describe(self) -> str:
        """'AMD EPYC (AVX2, AVX-512, VNNI, bf16; no AMX)'."""
        labels = {"avx2": "AVX2", "avx512": "AVX-512", "vnni": "VNNI", "bf16": "bf16", "amx": "AMX"}
        if "vnni" not in self.features:
            labels["avx_vnni"] = "AVX-VNNI"
        have = [label for key, label in labels.items() if key in self.features]
        lack = [label for key, label in labels.items() if key not in self.features and key != "avx_vnni"]
        text = ", ".join(have) or "no AVX2"
        text += f"; no {', no '.join(lack)}" if lack and have else ""
        if self.capped:
            text += f"; {self.capped}"
        return f"{self.name} ({text})"


@dataclass(frozen=True, slots=True)
class Choice:
    dtype: Dtype
    quant: Quant
    why: str

    def describe(self, cpu: CpuFeatures) -> str:
        """The one line serve prints at start."""
        return f"CPU {cpu.describe()} -> dtype {self.dtype}, quant {self.quant}: {self.why}"


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """/proc/cpuinfo -> (model name, its first processor's flags)."""
    name, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return name, flags


def from_flags(
    name: str, flags: Iterable[str], onednn_isa: str | None = None, aten: str | None = None
) -> CpuFeatures:
    """Raw CPU flags (cpuinfo names) -> the features torch may use under ONEDNN_MAX_CPU_ISA=onednn_isa (oneDNN:
    the bf16 and int8 GEMMs) and ATEN_CPU_CAPABILITY=aten (ATen's vector code: the int4 / int8 weight-only
    kernels; `default` is no AVX2, `avx2` no AVX-512)."""
    have = set(flags)
    features = {key for key, needs in FLAGS.items() if all(f in have for f in needs)}
    cap = (onednn_isa or "").strip().upper()
    mask = _ISA_MASKS.get(cap)  # DEFAULT / ALL / unknown names cap nothing
    if mask is not None:
        features = {f for f in features if _NEEDS[f] & mask == _NEEDS[f]}
    aten_cap = (aten or "").strip().lower()
    dropped = {"default": {"avx2", "avx512"}, "avx2": {"avx512"}}.get(aten_cap, set())
    capped = ", ".join(
        [f"ONEDNN_MAX_CPU_ISA={cap}"] * (mask is not None)
        + [f"ATEN_CPU_CAPABILITY={aten_cap}"] * bool(dropped)
    )
    return CpuFeatures(name or platform.processor() or "CPU", frozenset(features - dropped), capped or None)


def _torch_flags() -> frozenset[str]:
    """The same flags from torch's cpuinfo probes, where /proc/cpuinfo is missing (not Linux)."""
    import torch

    probes = {
        "avx2": "_is_avx2_supported",
        "avx512f avx512bw avx512vl avx512dq": "_is_avx512_supported",
        "avx512_vnni": "_is_vnni_supported",
        "avx512_bf16": "_is_avx512_bf16_supported",
        "amx_tile amx_bf16 amx_int8": "_is_amx_tile_supported",
    }
    out: set[str] = set()
    for flags, probe in probes.items():
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                out.update(flags.split())
        except RuntimeError:
            continue
    return frozenset(out)


@functools.cache
def detect() -> CpuFeatures:
    """This machine's features, as this process's oneDNN may use them."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return CpuFeatures(platform.processor() or platform.machine() or "CPU", frozenset())
    try:
        name, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        name, flags = "", frozenset()
    return from_flags(name, flags or _torch_flags(), cap, os.environ.get("ATEN_CPU_CAPABILITY"))


def stored(type_names: Iterable[str]) -> Stored:
    """GGML tensor type names of a checkpoint's matrices -> how coarse its weights are (the coarsest that most
    of them are: a Q4_K_M file keeps a few Q6_K / Q8_0 tensors)."""
    kinds = [_kind(t.upper()) for t in type_names]
    if not kinds:
        return "full"
    q4, q8 = kinds.count("q4"), kinds.count("q8")
    if q4 * 2 >= len(kinds):
        return "q4"
    return "q8" if (q4 + q8) * 2 >= len(kinds) else "full"


def stored_gguf(tensors: Iterable[Any]) -> Stored:
    """`stored` of a GGUFReader's tensors: the layers' matrices (norms are F32 vectors in every file)."""
    return stored(t.tensor_type.name for t in tensors if t.name.startswith("blk.") and len(t.shape) > 1)


def _kind(ggml_type: str) -> Stored:
    if ggml_type in ("F32", "F16", "BF16", "F64"):
        return "full"
    if ggml_type.startswith(("Q8", "Q6", "Q5")):  # 5-8 bits: int8 holds them nearly exactly
        return "q8"
    return "q4"  # Q4_*, the K-quants below 5 bits, IQ*, TQ*


def choose(cpu: CpuFeatures, weights: Stored = "full", dtype: str = "auto", quant: str = "auto") -> Choice:
    """The dtype and quantization to load a checkpoint storing `weights` with on `cpu`; an explicit dtype or
    quant (not "auto") is kept as given."""
    reasons: list[str] = []
    if dtype == "auto":
        if cpu.native_bf16:
            dtype = "bfloat16"
            reasons.append("native bf16" + (" (AMX)" if "amx" in cpu.features else ""))
        else:
            dtype = "float32"
            reasons.append(
                "no native bf16: emulated bf16 prefills 1.3-3.5x slower than float32 (bench/cpu_dtype.py)"
            )
    if quant == "auto":
        quant, why = _auto_quant(cpu, weights)
        reasons.append(why)
    if quant not in ("none", "int8", "int8-dynamic", "int4"):
        raise ValueError(f"quant must be one of auto, none, int8, int8-dynamic, int4, not {quant!r}")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be one of auto, float32, bfloat16, not {dtype!r}")
    return Choice(dtype, quant, "; ".join(reasons) or "as configured")  # type: ignore[arg-type]  # checked above


def _auto_quant(cpu: CpuFeatures, weights: Stored) -> tuple[Quant, str]:
    """Measured on the packaged Q4_1 SmolLM2-135M (bench/cpu_dtype.py, CPU time per token on one thread): with
    AVX-512, int4 decodes 2-4x faster than the dense model in either dtype; capped at AVX2, int4 decodes no faster
    than int8 and its prefill (bf16 dense GEMMs there) takes twice int8's, so a Q4 file runs int8. Without AVX2
    the integer kernels have no vector code: full precision."""
    if weights == "full":
        return "none", "full-precision weights: not quantized (accuracy first; --quant int8|int4 for speed)"
    if "avx2" not in cpu.features:
        return "none", f"{weights.upper()} weights, but no AVX2 for the integer kernels: dequantized"
    if weights == "q4" and "avx512" in cpu.features:
        return "int4", "the file's weights are Q4: the int4 kernels keep what it has and decode fastest"
    why = "the int8 kernels keep what it has and decode fastest"
    if weights == "q4":
        why = "without AVX-512 int4 decodes no faster than int8 and prefills slower"
    return "int8", f"the file's weights are {weights.upper()}: {why}"
