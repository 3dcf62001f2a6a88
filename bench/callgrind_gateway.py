"""Control-plane cost per request in instructions: the gateway under callgrind, ledger / metrics / access log on or off.

Wall clock on a shared 2-core host moves ±15–30 % between rounds; instruction counts do not. For each mode: start
bench/fast_upstream.py, `smolgate serve` under `valgrind --tool=callgrind` (its children too, so the SQLite
ledger's writer process is counted apart), warm up with 300 requests, zero the counters, send N sequential
non-streaming OpenAI requests, wait past the ledger's flush, dump, and divide each process's instructions by N.

    .venv/bin/python bench/callgrind_gateway.py [--requests 2000] [modes…]   # default: off on

Modes: off (no ledger, metrics or access log), on (the defaults), ledger, metrics, access (each alone),
noflush (ledger rows recorded, never written). Writes bench/results/callgrind-gateway.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from gateway import OPENAI_BODY, free_port, wait_port  # bench/gateway.py
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
PY = sys.executable
console = Console()
WARMUP = 300
QUIET = "observability: {metrics: false, access_log: false}\n"
MODES = {
    "off": "ledger: {enabled: false}\n" + QUIET,
    "on": "",
    "ledger": QUIET,
    "metrics": "ledger: {enabled: false}\nobservability: {access_log: false}\n",
    "access": "ledger: {enabled: false}\nobservability: {metrics: false}\n",
    "noflush": "ledger: {flush_interval: 3600, max_buffer: 1000000}\n" + QUIET,
}


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def callgrind(pids: list[int], flag: str) -> None:
    for pid in pids:  # by pid: never another user's callgrind
        subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True, check=False)


def totals(prefix: str, pid: int) -> int:
    """Instructions in the dumps made after the zeroing (`<prefix>.<pid>.<n>`, n ≥ 1)."""
    total = 0
    for f in Path(prefix).parent.glob(f"{Path(prefix).name}.{pid}.*"):
        m = re.search(r"^(?:totals|summary):\s+(\d+)", f.read_text(errors="replace"), re.M)
        total += int(m.group(1)) if m else 0
    return total


def measure(mode: str, n: int, out: Path) -> dict[str, float]:
    up_port, port = free_port(), free_port()
    up = subprocess.Popen([PY, str(HERE / "fast_upstream.py"), str(up_port)])
    data = Path(tempfile.mkdtemp(prefix="smolgate-cg-"))
    cfg = data / "smolgate.yaml"
    cfg.write_text(
        f"data_dir: {data}\n{MODES[mode]}providers:\n  - name: up\n    protocol: openai\n"
        f"    base_url: http://127.0.0.1:{up_port}/v1\n    accounts: [{{api_key: k}}]\n"
        "models:\n  - name: bench\n    targets: [{provider: up, model: bench-upstream}]\n"
    )
    prefix = str(out / f"cg-{mode}")
    for f in out.glob(f"cg-{mode}.*"):
        f.unlink()
    cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={prefix}.%p"]
    cmd += ["--dump-instr=no", PY, "-m", "smolgate.cli", "serve", "--config", str(cfg), "--port", str(port)]
    gw = subprocess.Popen(
        [*cmd, "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(up_port)
        wait_port(port, timeout=600)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        with httpx.Client(timeout=120) as c:
            for _ in range(WARMUP):
                c.post(url, json=OPENAI_BODY).raise_for_status()
            time.sleep(3)  # the warm-up's flush
            pids = [gw.pid, *children(gw.pid)]
            callgrind(pids, "-z")
            for _ in range(n):
                c.post(url, json=OPENAI_BODY).raise_for_status()
            time.sleep(3)  # past the ledger's flush of these
            callgrind(pids, "-d")
    finally:
        gw.terminate()
        gw.wait(120)
        up.terminate()
        up.wait(30)
        shutil.rmtree(data, ignore_errors=True)
    result = {"gateway": totals(prefix, gw.pid) / n}
    for pid in pids[1:]:
        result["writer" if "writer" not in result else f"child-{pid}"] = totals(prefix, pid) / n
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modes", nargs="*", default=["off", "on"], choices=list(MODES))
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="smolgate-callgrind-"))
    results = {}
    for mode in args.modes:
        console.print(f"{mode}: {args.requests} requests under callgrind…")
        results[mode] = measure(mode, args.requests, out)
        console.print(f"  {mode}: " + ", ".join(f"{k} {v / 1000:,.0f} k" for k, v in results[mode].items()))
    base = results.get("off", {}).get("gateway")
    table = Table("mode", "gateway (k instr/request)", "vs off", "writer process (k instr/request)")
    for mode, r in results.items():
        ratio = f"{r['gateway'] / base:.3f}" if base else "-"
        table.add_row(mode, f"{r['gateway'] / 1000:,.1f}", ratio, f"{r.get('writer', 0) / 1000:,.1f}")
    console.print(table)
    path = HERE / "results" / "callgrind-gateway.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"requests": args.requests, "instructions_per_request": results}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
