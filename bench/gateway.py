"""Gateway overhead benchmark: added latency at a fixed rate and max sustained RPS on one worker.

Processes: the fast fake upstream and the load generator share core 1; smolgate (one uvicorn worker)
gets core 0 to itself. For each scenario the same load runs against the upstream directly and through
smolgate; "added" = via-gateway minus direct, percentile by percentile.

    .venv/bin/python bench/gateway.py [--rate 500] [--seconds 5] [--concurrency 64]
    .venv/bin/python bench/gateway.py --compare /tmp/base --rounds 2   # another checkout's gateway, alternating
    .venv/bin/python bench/gateway.py --control-plane --rounds 3 --transports h1   # ledger + metrics off vs on

Writes bench/results/gateway.json and gateway.png (with --compare: gateway-compare.json and .png, each row
labelled by the tree it ran from; with --control-plane: gateway-control-plane.json and .png, rows labelled
"off" (no ledger, no metrics, no access log) and "on" (the defaults: SQLite ledger, Prometheus metrics)).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

HERE = Path(__file__).resolve().parent
PY = sys.executable
console = Console()

OPENAI_BODY = {
    "model": "bench",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello to the benchmark."},
    ],
}
ANTHROPIC_BODY = {
    "model": "bench",
    "max_tokens": 64,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
}


CONTROL_PLANE_OFF = "ledger: {enabled: false}\nobservability: {metrics: false, access_log: false}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: int):  # type: ignore[no-untyped-def]
    ncores = os.cpu_count() or 1
    return lambda: os.sched_setaffinity(0, {core % ncores})


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def percentiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    q = statistics.quantiles(xs, n=100, method="inclusive")
    return {"p50": q[49], "p90": q[89], "p99": q[98]}


def load(url: str, body: dict, headers: dict, mode: str, arg: float, seconds: float) -> dict:
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(json.dumps(body).encode())
    out = subprocess.run(
        [PY, str(HERE / "loadgen.py"), url, f.name, json.dumps(headers), mode, str(arg), str(seconds)],
        capture_output=True,
        text=True,
        preexec_fn=pinned(1),
        check=True,
    )
    os.unlink(f.name)
    return json.loads(out.stdout)


def wrk_max_rps(url: str, body: dict, headers: dict, concurrency: int, seconds: float) -> dict | None:
    """Closed-loop max RPS with wrk (C; not the bottleneck the Python load generator can be)."""
    if shutil.which("wrk") is None:
        return None
    lua = "wrk.method = 'POST'\nwrk.body = " + json.dumps(json.dumps(body)) + "\n"
    lua += "".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n"
        for k, v in {"content-type": "application/json", **headers}.items()
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{int(seconds)}s", "-s", f.name, url],
        capture_output=True,
        text=True,
        preexec_fn=pinned(1),
    )
    os.unlink(f.name)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out.stdout)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out.stdout)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, errors.groups())) if errors else 0),
        "tool": "wrk",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--transports", default="h1,aiohttp", help="upstream HTTP clients to compare")
    ap.add_argument(
        "--compare",
        default=None,
        help="another checkout (e.g. a git worktree of an older commit): "
        "its gateway runs in alternation with this one, same upstream, same run",
    )
    ap.add_argument(
        "--control-plane",
        action="store_true",
        help="this tree with the ledger, metrics and access log off, then on (the defaults), alternating",
    )
    ap.add_argument("--rounds", type=int, default=1, help="with --compare/--control-plane: alternations")
    args = ap.parse_args()
    trees: list[tuple[str, str | None, str]] = [("this", None, "")]
    if args.compare:
        base = str(Path(args.compare).resolve() / "src")
        trees = [("base", base, ""), ("this", None, "")] * args.rounds
    elif args.control_plane:
        trees = [("off", None, CONTROL_PLANE_OFF), ("on", None, "")] * args.rounds
    results = []
    up_port = free_port()
    upstream = subprocess.Popen([PY, str(HERE / "fast_upstream.py"), str(up_port)], preexec_fn=pinned(1))
    try:
        wait_port(up_port)
        with Progress(console=console) as progress:
            transports = args.transports.split(",")
            task = progress.add_task("benchmarking", total=len(transports) * 12 * len(trees))
            for label, src, extra in trees:
                for transport in transports:
                    for r in run_transport(args, transport, up_port, progress, task, src, extra):
                        results.append({**r, "tree": label})
    finally:
        upstream.terminate()
        upstream.wait(10)
    report(results, args)


def run_transport(
    args: argparse.Namespace,
    transport: str,
    up_port: int,
    progress: Progress,
    task,  # type: ignore[no-untyped-def]
    src: str | None = None,
    extra: str = "",
) -> list[dict]:
    """All scenarios through one gateway process whose provider uses `transport` (its code from `src` if set;
    `extra`: more config lines)."""
    gw_port = free_port()
    data = tempfile.mkdtemp(prefix="smolgate-bench-")  # its own store: no rows from an earlier run
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    cfg.write(f"data_dir: {data}\n{extra}")
    cfg.write(
        f"providers:\n  - name: up\n    protocol: openai\n    base_url: http://127.0.0.1:{up_port}/v1\n"
        f"    accounts: [{{api_key: bench-key}}]\n    transport: {transport}\n"
        f"models:\n  - name: bench\n    targets: [{{provider: up, model: bench-upstream}}]\n"
    )
    cfg.close()
    gateway = subprocess.Popen(
        [
            PY,
            "-m",
            "smolgate.cli",
            "serve",
            "--config",
            cfg.name,
            "--port",
            str(gw_port),
            "--log-level",
            "warning",
        ],
        preexec_fn=pinned(0),
        env={**os.environ, "PYTHONPATH": src} if src else None,
    )
    up = f"http://127.0.0.1:{up_port}/v1/chat/completions"
    gw = f"http://127.0.0.1:{gw_port}"
    scenarios = [
        ("openai→openai", False, f"{gw}/v1/chat/completions", OPENAI_BODY, {"authorization": "Bearer x"}),
        ("openai→openai stream", True, f"{gw}/v1/chat/completions", OPENAI_BODY, {}),
        ("anthropic→openai", False, f"{gw}/v1/messages", ANTHROPIC_BODY, {"anthropic-version": "2023-06-01"}),
        (
            "anthropic→openai stream",
            True,
            f"{gw}/v1/messages",
            ANTHROPIC_BODY,
            {"anthropic-version": "2023-06-01"},
        ),
    ]
    results = []
    try:
        wait_port(gw_port)
        for name, stream, url, body, headers in scenarios:
            body = {**body, "stream": stream}
            direct = load(up, {**OPENAI_BODY, "stream": stream}, {}, "rate", args.rate, args.seconds)
            progress.advance(task)
            via = load(url, body, headers, "rate", args.rate, args.seconds)
            progress.advance(task)
            top = wrk_max_rps(url, body, headers, args.concurrency, args.seconds) or load(
                url, body, headers, "max", args.concurrency, args.seconds
            )
            progress.advance(task)
            d, v = percentiles(direct["latencies_ms"]), percentiles(via["latencies_ms"])
            results.append(
                {
                    "scenario": name,
                    "transport": transport,
                    "rate": args.rate,
                    "direct_ms": d,
                    "gateway_ms": v,
                    "added_ms": {k: v[k] - d[k] for k in d},
                    "errors": via["errors"] + direct["errors"],
                    "max_rps": top["rps"],
                    "max_rps_errors": top["errors"],
                }
            )
    finally:
        gateway.terminate()
        gateway.wait(10)
        os.unlink(cfg.name)
        shutil.rmtree(data, ignore_errors=True)
    return results


def report(results: list[dict], args: argparse.Namespace) -> None:
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    name = "gateway-compare" if args.compare else "gateway-control-plane" if args.control_plane else "gateway"
    (out_dir / f"{name}.json").write_text(json.dumps({"results": results, "args": vars(args)}, indent=2))
    t = Table(
        "tree", "transport", "scenario", "added p50 ms", "added p90 ms", "added p99 ms", "max RPS", "errors"
    )
    for r in results:
        a = r["added_ms"]
        t.add_row(
            r["tree"],
            r["transport"],
            r["scenario"],
            f"{a['p50']:.3f}",
            f"{a['p90']:.3f}",
            f"{a['p99']:.3f}",
            f"{r['max_rps']:.0f}",
            str(r["errors"] + r["max_rps_errors"]),
        )
    console.print(t)
    if args.control_plane:
        control_plane_ratios(results)
    plot(results, out_dir / f"{name}.png")


def control_plane_ratios(results: list[dict]) -> None:
    """Per scenario and round: max RPS on ÷ off, and added p50 on − off (rounds alternate off, on)."""
    t = Table("scenario", "max RPS on ÷ off, per round", "added p50 on − off (ms), per round")
    for scenario in dict.fromkeys(r["scenario"] for r in results):
        runs = [r for r in results if r["scenario"] == scenario]
        pairs = [(off, on) for off, on in zip(runs[::2], runs[1::2], strict=False)]
        rps = ", ".join(f"{on['max_rps'] / off['max_rps']:.2f}" for off, on in pairs if off["max_rps"])
        p50 = ", ".join(f"{on['added_ms']['p50'] - off['added_ms']['p50']:+.3f}" for off, on in pairs)
        t.add_row(scenario, rps, p50)
    console.print(t)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(12.0, 0.9 * len(results)), 5))
    names = [f"{r['tree']} {r['transport']}: {r['scenario']}" for r in results]
    x = range(len(names))
    for i, q in enumerate(("p50", "p90", "p99")):
        ax1.bar([j + (i - 1) * 0.27 for j in x], [r["added_ms"][q] for r in results], width=0.27, label=q)
    ax1.axhline(0.5, color="grey", ls="--", lw=0.8, label="p50 target 0.5 ms")
    ax1.axhline(2.0, color="red", ls="--", lw=0.8, label="p99 target 2 ms")
    ax1.set_xticks(list(x), names, rotation=15, fontsize=8)
    ax1.set_ylabel(f"added latency at {results[0]['rate']:.0f} RPS (ms)")
    ax1.legend(fontsize=8)
    ax2.bar(list(x), [r["max_rps"] for r in results], color="tab:green")
    ax2.set_xticks(list(x), names, rotation=15, fontsize=8)
    ax2.set_ylabel("max sustained RPS (one worker)")
    fig.suptitle("smolgate gateway overhead")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
