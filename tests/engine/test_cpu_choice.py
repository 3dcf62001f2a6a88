"""The engine's default dtype and quantization follow the CPU it runs on (engine/cpu.py, issue 20 §1).

The choice is a pure function of the CPU's features, so any CPU is tested by its flags (taken from real parts'
/proc/cpuinfo); the detection is tested here for real, and under ONEDNN_MAX_CPU_ISA in a subprocess, which makes
this machine's oneDNN (the bf16 and int8 GEMMs) run as a CPU without native bf16 would.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from checkpoints import make_checkpoint
from fixtures import gguf_reader

from smolgate.engine import cpu
from smolgate.engine.engine import Engine

REPO = Path(__file__).resolve().parents[2]
BASE = "fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt"
AVX2 = f"{BASE} avx f16c fma avx2"
AVX512 = f"{AVX2} avx512f avx512dq avx512cd avx512bw avx512vl"
CPUS = {  # flags as those parts report them (trimmed to what matters)
    "sapphire-rapids": f"{AVX512} avx512_vnni avx512_bf16 avx_vnni amx_bf16 amx_tile amx_int8",
    "zen4": f"{AVX512} avx512_vnni avx512_bf16",  # this machine (AMD EPYC)
    "ice-lake": f"{AVX512} avx512_vnni",  # AVX-512 without bf16: the machine
    "alder-lake": f"{AVX2} avx_vnni",  # AVX2 only (P-cores' AVX-512 fused off)
    "haswell": AVX2,
    "atom": BASE,  # no AVX at all
}
NATIVE_BF16 = {"sapphire-rapids", "zen4"}


def features(name: str, cap: str | None = None) -> cpu.CpuFeatures:
    return cpu.from_flags(name, CPUS[name].split(), cap)


@pytest.mark.parametrize("name", CPUS)
def test_bf16_only_where_it_is_native(name: str) -> None:
    choice = cpu.choose(features(name))
    assert choice.dtype == ("bfloat16" if name in NATIVE_BF16 else "float32")
    assert choice.quant == "none"  # full-precision weights are never quantized by default


@pytest.mark.parametrize("name", CPUS)
@pytest.mark.parametrize("stored", ["q4", "q8", "full"])
def test_quantized_files_run_the_integer_kernels_that_are_fast_there(name: str, stored: cpu.Stored) -> None:
    """int4 with AVX-512; int8 with AVX2 only (int4 no faster there, and slower to prefill); none without AVX2."""
    want = {"q4": "int4", "q8": "int8", "full": "none"}[stored]
    if name in ("alder-lake", "haswell") and stored == "q4":
        want = "int8"
    if name == "atom":
        want = "none"
    assert cpu.choose(features(name), stored).quant == want


def test_what_is_given_is_kept_and_the_rest_chosen() -> None:
    ice = features("ice-lake")
    assert (cpu.choose(ice, "q4", dtype="bfloat16").dtype, cpu.choose(ice, "q4", dtype="bfloat16").quant) == (
        "bfloat16",
        "int4",
    )
    kept = cpu.choose(features("zen4"), "q4", dtype="float32", quant="none")
    assert (kept.dtype, kept.quant, kept.why) == ("float32", "none", "as configured")
    with pytest.raises(ValueError, match="quant must be one of"):
        cpu.choose(ice, quant="int3")
    with pytest.raises(ValueError, match="dtype must be one of"):
        cpu.choose(ice, dtype="fp16")


def test_the_printed_line_names_the_cpu_its_features_and_why() -> None:
    line = cpu.choose(features("ice-lake"), "q4").describe(features("ice-lake"))
    assert line.startswith(
        "CPU ice-lake (AVX2, AVX-512, VNNI; no bf16, no AMX) -> dtype float32, quant int4: "
    )
    assert "no native bf16" in line and "Q4" in line
    amx = cpu.choose(features("sapphire-rapids")).describe(features("sapphire-rapids"))
    assert "(AVX2, AVX-512, VNNI, bf16, AMX)" in amx and "native bf16 (AMX)" in amx
    assert features("atom").describe() == "atom (no AVX2)"
    assert "AVX-VNNI" in features("alder-lake").describe()


@pytest.mark.parametrize(
    ("cap", "left"),
    [
        ("AVX512_CORE", {"avx2", "avx512"}),  # what the CPU offers oneDNN
        ("avx512_core_bf16", {"avx2", "avx512", "vnni", "bf16"}),
        ("AVX2", {"avx2"}),
        ("AVX2_VNNI", {"avx2", "avx_vnni"}),
        ("ALL", {"avx2", "avx512", "vnni", "bf16", "amx", "avx_vnni"}),
        ("no-such-isa", {"avx2", "avx512", "vnni", "bf16", "amx", "avx_vnni"}),
    ],
)
def test_onednn_max_cpu_isa_hides_what_onednn_will_not_use(cap: str, left: set[str]) -> None:
    capped = features("sapphire-rapids", cap)
    assert capped.features == left
    assert capped.native_bf16 == ("bf16" in left)
    assert (capped.capped is None) == (cap in ("ALL", "no-such-isa"))


def test_aten_cpu_capability_hides_the_vector_widths_aten_will_not_use() -> None:
    avx2 = cpu.from_flags("x", CPUS["zen4"].split(), aten="avx2")
    assert avx2.features == {"avx2", "vnni", "bf16"} and avx2.native_bf16  # bf16 GEMMs are oneDNN's
    assert cpu.choose(avx2, "q4").quant == "int8"
    assert cpu.from_flags("x", CPUS["zen4"].split(), aten="default").features == {"vnni", "bf16"}
    assert "ATEN_CPU_CAPABILITY=avx2" in avx2.describe()


def test_cpuinfo_is_read_from_the_first_processor() -> None:
    text = (
        "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
        "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n"
    )
    assert cpu.parse_cpuinfo(text) == ("AMD EPYC", frozenset({"fpu", "avx2", "avx512f", "avx512_bf16"}))
    assert cpu.parse_cpuinfo("") == ("", frozenset())


def test_gguf_weight_types_say_how_coarse_the_file_is() -> None:
    assert cpu.stored(["Q4_1"] * 6 + ["Q8_0"]) == "q4"
    assert cpu.stored(["Q4_K"] * 3 + ["Q6_K"] * 4) == "q8"  # mostly 6-bit: int8 keeps them
    assert cpu.stored(["Q8_0", "F16", "F16"]) == "full"
    assert cpu.stored(["BF16", "F32"]) == cpu.stored([]) == "full"


def test_this_machine_is_read_as_torch_sees_it() -> None:
    here = cpu.detect()
    if "ONEDNN_MAX_CPU_ISA" not in os.environ and "DNNL_MAX_CPU_ISA" not in os.environ:
        assert ("avx512" in here.features) == torch.cpu._is_avx512_supported()
        assert ("bf16" in here.features) == torch.cpu._is_avx512_bf16_supported()
        assert ("amx" in here.features) == torch.cpu._is_amx_tile_supported()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint("smollm2-text", tmp_path_factory.mktemp("cpu") / "tiny")[0]


def test_auto_loads_with_this_cpus_choice_and_says_so(tiny: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="smolgate.engine.engine"):
        engine = Engine.load(str(tiny), dtype="auto", quant="auto")
    try:
        want = "bfloat16" if cpu.detect().native_bf16 else "float32"
        assert (engine.choice.dtype, engine.choice.quant) == (want, "none")
        assert engine.model.dtype == getattr(torch, want)
        assert [r.getMessage() for r in caplog.records] == [engine.choice.describe(cpu.detect())]
    finally:
        engine.close()


LOAD = """
import json, sys
from smolgate.engine import cpu
from smolgate.engine.engine import Engine
from smolgate.engine.quant import QuantLinear
engine = Engine.load(sys.argv[1], dtype="auto", quant="auto")
print(json.dumps({"dtype": str(engine.model.dtype), "choice": engine.choice.describe(cpu.detect()),
    "quantized": any(isinstance(m, QuantLinear) for m in engine.model.modules())}))
engine.close()
"""


def test_a_cpu_without_native_bf16_loads_float32(tiny: Path) -> None:
    """This machine's oneDNN capped at plain AVX-512 (as on the issue's CPU): auto loads float32."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
    proc = subprocess.run(
        [sys.executable, "-c", LOAD, str(tiny)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["dtype"] == "torch.float32" and not out["quantized"]
    assert "no bf16" in out["choice"] and "; ONEDNN_MAX_CPU_ISA=AVX512_CORE)" in out["choice"]


def test_the_packaged_model_is_read_as_q4() -> None:
    """What `auto` sees in the packaged Q4_1 GGUF (loading it quantized: tests/gateway/test_local_engine.py serves
    it with the default config, and the quantized modes' tests load int4 / int8)."""
    assert cpu.stored_gguf(gguf_reader().tensors) == "q4"
    assert cpu.choose(features("ice-lake"), cpu.stored_gguf(gguf_reader().tensors)).quant == "int4"
