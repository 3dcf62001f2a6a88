"""Console benchmark: every page of the web console loaded in headless chromium against `smolgate serve` whose
SQLite store holds 1M ledger rows (bench/store.py's traffic: 30 days, ~50 keys, ~20 models, ~30 accounts).

For each page, `--runs` full loads (a fresh document each time, signed in): the document's load event, the time
until the page has fetched and shown its data (the `sg-ready:` mark page.js sets), and each of its data calls
(/admin/*, /ui/api/*) from the browser's Resource Timing. Medians are reported; target: shown ≤ 300 ms.

    .venv/bin/python bench/console.py [--rows 1000000] [--runs 7]

Writes bench/results/console.json. Needs Debian's chromium (scripts/ensure_chromium.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.*
sys.path.insert(0, str(HERE))  # store (bench/store.py's rows)

from playwright.sync_api import Page, sync_playwright  # noqa: E402
from store import cpu_model, rows  # noqa: E402

from smolgate.store.sqlite import SqliteStore  # noqa: E402
from tests.fakes.fleet import running_fakes  # noqa: E402
from tests.gateway.conftest import UPSTREAM_KEYS, matrix_config  # noqa: E402
from tests.serve_process import start_serve  # noqa: E402

console = Console()
TARGET_MS = 300.0
ADMIN_KEY = "adm-bench-console"
PAGES = ["overview", "overview-30d", "accounts", "keys", "usage", "routes", "requests", "playground", "audit"]


async def fill(db: Path, n: int) -> float:
    store = SqliteStore(db)
    await store.open()
    t0 = time.perf_counter()
    for batch in rows(n, time.time()):
        await store.add_usage(batch)
    await store.close()
    return time.perf_counter() - t0


def measure(page: Page, name: str) -> dict[str, Any]:
    tag = "sg-" + name.split("-")[0]
    page.evaluate(f"sessionStorage.setItem('sg-range', '{'30d' if name.endswith('30d') else '24h'}')")
    page.goto(f"/ui/?load={time.monotonic_ns()}#/{name.split('-')[0]}")  # a new document every time
    page.wait_for_selector(f"{tag}[data-ready]", timeout=60_000)
    got: dict[str, Any] = page.evaluate(
        """(tag) => {
        const nav = performance.getEntriesByType('navigation')[0];
        const ready = performance.getEntriesByName('sg-ready:' + tag)[0];
        const calls = performance.getEntriesByType('resource')
          .filter((r) => /\\/(admin|ui\\/api)\\//.test(new URL(r.name).pathname))
          .map((r) => ({path: new URL(r.name).pathname + new URL(r.name).search, ms: r.duration}));
        return {load_ms: nav.loadEventEnd, ready_ms: ready ? ready.startTime : null, calls};
        }""",
        tag,
    )
    if page.locator(f"{tag} .status.error").count():
        raise RuntimeError(f"{name}: {page.locator(f'{tag} .status.error').inner_text()}")
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument(
        "--screenshots", type=Path, help="also save each page as DIR/<page>.png (the README's come from here)"
    )
    args = ap.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("Debian's chromium is missing: sh scripts/ensure_chromium.sh")
    with (
        tempfile.TemporaryDirectory(prefix="smolgate-bench-console-") as tmp,
        running_fakes(UPSTREAM_KEYS) as fakes,
    ):
        db = Path(tmp) / "smolgate.db"
        insert_s = asyncio.run(fill(db, args.rows))
        console.print(f"{args.rows:,} ledger rows in {insert_s:.1f} s")
        urls = {**{k: f.url for k, f in fakes.items()}, "openai-responses": fakes["openai"].url}
        cfg = Path(tmp) / "smolgate.yaml"
        cfg.write_text(
            matrix_config(
                urls, f"server: {{admin_key: {ADMIN_KEY}}}\ndata_dir: {tmp}\nstore: sqlite:///{db}\n"
            )
        )
        proc, url = start_serve(cfg, timeout=120)
        try:
            admin = {"authorization": f"Bearer {ADMIN_KEY}"}
            secrets = [  # keys with budgets: the Keys page shows each one's spend
                httpx.post(
                    f"{url}/admin/keys",
                    json={"name": f"team-{i}", "budget_usd": 100, "period": "month"},
                    headers=admin,
                ).json()["secret"]
                for i in range(50)
            ]
            for i in range(200):  # the Requests page's ring
                body = {"model": "via-openai", "messages": [{"role": "user", "content": f"hi {i}"}]}
                httpx.post(
                    f"{url}/v1/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {secrets[i % 50]}"},
                ).raise_for_status()
            results = run_pages(url, chromium, args.runs, args.screenshots)
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    report(results, args)


def run_pages(url: str, chromium: str, runs: int, shots: Path | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_context(viewport={"width": 1366, "height": 860}, base_url=url).new_page()
        page.goto("/ui/")
        page.get_by_label("Admin key").fill(ADMIN_KEY)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("sg-overview[data-ready]")
        for name in PAGES:
            measure(page, name)  # warm-up: the browser's module cache, the store's page cache
            samples = [measure(page, name) for _ in range(runs)]
            calls: dict[str, list[float]] = {}
            for s in samples:
                for c in s["calls"]:
                    calls.setdefault(c["path"], []).append(c["ms"])
            out[name] = {
                "load_ms": round(statistics.median(s["load_ms"] for s in samples), 1),
                "ready_ms": round(statistics.median(s["ready_ms"] for s in samples), 1),
                "calls_ms": {k: round(statistics.median(v), 1) for k, v in calls.items()},
            }
            console.print(f"  {name}: shown in {out[name]['ready_ms']} ms")
            if shots is not None:
                shots.mkdir(parents=True, exist_ok=True)
                page.wait_for_timeout(300)  # the charts' last paint
                page.screenshot(path=str(shots / f"{name}.png"))
        browser.close()
    return out


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    table = Table(
        f"page (median of {args.runs}, ms; target ≤ {TARGET_MS:g})",
        "load event",
        "data shown",
        "slowest data call",
    )
    for name, r in results.items():
        slow = max(r["calls_ms"].items(), key=lambda kv: kv[1], default=("–", 0.0))
        colour = "green" if r["ready_ms"] <= TARGET_MS else "red"
        table.add_row(
            name, f"{r['load_ms']:.0f}", f"[{colour}]{r['ready_ms']:.0f}[/]", f"{slow[1]:.0f} {slow[0]}"
        )
    console.print(table)
    out = HERE / "results" / "console.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"cpu": cpu_model(), "rows": args.rows, "runs": args.runs, "pages": results}, indent=2)
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
