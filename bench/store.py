"""Store benchmark: 1M ledger rows into SQLite and PostgreSQL, then the dashboard's queries, each timed.

Rows are written the way the ledger writer writes them (batches of 5,000 through `Store.add_usage`: raw rows plus
rollup upserts in one transaction), spread over the last 30 days in time order: ~50 keys, ~20 models, ~30
accounts over 4 providers, ~2% errors. Each query then runs `--runs` times (after one warm-up); the median is
reported, wall clock and this process's CPU time (for SQLite that is all of the query's work; for PostgreSQL
only the client's). Target: each ≤ 50 ms. PostgreSQL is a private server started like the tests' (tests/postgres_server.py)
but with fsync on.

    .venv/bin/python bench/store.py [--rows 1000000] [--runs 9] [--backend sqlite|postgres|both] [--explain]

Writes bench/results/store.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.postgres_server

from smolgate.store import Store, UsageRow  # noqa: E402
from smolgate.store.ledger import BATCH  # noqa: E402
from smolgate.store.postgres import PostgresStore  # noqa: E402
from smolgate.store.sqlite import SqliteStore  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402

console = Console()
DAY = 86400.0
TARGET_MS = 50.0

KEYS = [f"vk_{i:02d}" for i in range(50)]
PROVIDERS = ["openai", "anthropic", "gemini", "ollama"]
MODELS = [(PROVIDERS[i % 4], f"model-{i:02d}") for i in range(20)]  # 5 per provider
ACCOUNTS = {
    p: [f"{p}-acct-{i}" for i in range(30) if i % 4 == n] for n, p in enumerate(PROVIDERS)
}  # 30 in all
ALIASES = [(f"alias-{i}", MODELS[i], MODELS[(i + 10) % 20]) for i in range(10)]  # a primary and a fallback
PROTOCOLS = ["openai", "anthropic", "gemini", "ollama", "openai-responses"]


def rows(n: int, now: float, seed: int = 17) -> Iterator[list[UsageRow]]:
    """`n` rows over the 30 days before `now`, in time order, in batches of the writer's size. Like real traffic,
    a few keys and accounts carry most of it, each key uses a couple of aliases, an alias routes to its primary
    model (5% to its fallback), and an account belongs to its model's provider."""
    rnd = random.Random(seed)
    start, step = now - 30 * DAY, 30 * DAY / n
    batch: list[UsageRow] = []
    for i in range(n):
        error = rnd.random() < 0.02
        k = int(rnd.paretovariate(1.1)) % 50
        alias, primary, fallback = ALIASES[(k + rnd.choice((0, 0, 0, 1, 3))) % 10]
        provider, model = fallback if rnd.random() < 0.05 else primary
        accounts = ACCOUNTS[provider]
        account = accounts[int(rnd.paretovariate(1.5)) % len(accounts)]
        inp = rnd.randrange(50, 8000)
        batch.append(
            UsageRow(
                ts=start + (i + rnd.random()) * step,
                request_id=f"req-{i:08d}",
                key_id=KEYS[k],
                client_protocol=rnd.choice(PROTOCOLS),
                alias=alias,
                provider=provider,
                account=account,
                upstream_model=model,
                upstream_protocol=provider,
                input_tokens=inp,
                cached_tokens=inp // 2 if rnd.random() < 0.3 else 0,
                output_tokens=0 if error else rnd.randrange(1, 2000),
                cost_usd=0.0 if error else inp * 3e-6,
                latency_ms=rnd.uniform(100, 8000),
                ttft_ms=rnd.uniform(50, 900) if rnd.random() < 0.6 else None,
                status=rnd.choice((429, 500, 502)) if error else 200,
                error_kind="upstream" if error else None,
                stream=rnd.random() < 0.6,
            )
        )
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def queries(store: Store, now: float) -> dict[str, Callable[[], Awaitable[object]]]:
    day_ago, month_start = now - DAY, now - 30 * DAY
    return {
        "24h by key": lambda: store.usage_totals(day_ago, now, by="key"),
        "24h by model": lambda: store.usage_totals(day_ago, now, by="model"),
        "24h top accounts": lambda: store.usage_totals(day_ago, now, by="account", limit=10),
        "24h error rate": lambda: store.usage_totals(day_ago, now),
        "24h series (hourly)": lambda: store.usage_series(day_ago, now, step=3600),
        "1h series (per minute)": lambda: store.usage_series(now - 3600, now, step=60),
        "30d by key": lambda: store.usage_totals(month_start, now, by="key"),
        "24h by key, with percentiles": lambda: store.usage_totals(day_ago, now, by="key", percentiles=True),
        "30d by key, with percentiles": lambda: store.usage_totals(
            month_start, now, by="key", percentiles=True
        ),
        "key spend this month": lambda: store.key_spend(KEYS[0], month_start),
        "100 newest rows": lambda: store.recent_usage(100),
        **recent_queries(store, now),
    }


RARE_ACCOUNT = f"anthropic/{ACCOUNTS['anthropic'][-1]}"  # the least used (~0.5 % of the rows)


def recent_queries(store: Store, now: float) -> dict[str, Callable[[], Awaitable[object]]]:
    """The console's Usage page: the newest raw rows under each filter it offers (`/admin/usage/recent`)."""
    day_ago = now - DAY
    return {
        "recent: one alias": lambda: store.recent_usage(100, alias=ALIASES[9][0]),
        "recent: rarest account": lambda: store.recent_usage(100, account=RARE_ACCOUNT),
        "recent: errors": lambda: store.recent_usage(100, status="error"),
        "recent: status 502, 24h": lambda: store.recent_usage(100, since=day_ago, status=502),
        "recent: key + alias + ok, 24h": lambda: store.recent_usage(
            100, KEYS[3], since=day_ago, alias=ALIASES[3][0], status="ok"
        ),
        "recent: 1,000 rows of a day a week ago": lambda: store.recent_usage(
            1000, since=now - 8 * DAY, until=now - 7 * DAY
        ),
        "recent: unknown alias, 24h": lambda: store.recent_usage(100, since=day_ago, alias="nope"),
        "recent: unknown alias, all time": lambda: store.recent_usage(100, alias="nope"),
    }


async def explain(store: Store, now: float) -> None:
    """Each recent-rows query's plan, as the backend chooses it (are the indexes used?)."""
    from smolgate.store.sql import SqlStore
    from smolgate.store.usage_sql import usage_filter

    assert isinstance(store, SqlStore)
    cases = {
        "alias": dict(alias="a"), "account": dict(account="p/a"), "errors": dict(status="error"),
        "24h + status": dict(since=now - DAY, status=502), "key + alias + 24h": dict(key_id="k", alias="a", since=now - DAY),
    }  # fmt: skip
    for label, kw in cases.items():
        conds, args = usage_filter(
            kw.get("since"), None, kw.get("key_id"), kw.get("alias"), kw.get("account"), kw.get("status")
        )
        sql = f"SELECT * FROM usage WHERE {' AND '.join(conds)} ORDER BY ts DESC LIMIT 100"
        prefix = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
        plan = await store._fetch(store._q(prefix + sql), args)
        console.print(f"  [bold]{label}[/]: " + " | ".join(str(r[-1]) for r in plan))


async def run(name: str, store: Store, n: int, runs: int, explain_plans: bool = False) -> dict[str, object]:
    await store.open()
    now = time.time()
    t0 = time.perf_counter()
    done = 0
    for batch in rows(n, now):
        await store.add_usage(batch)
        done += len(batch)
        if done % 100_000 < BATCH:
            console.print(
                f"  {name}: {done:,} rows, {done / (time.perf_counter() - t0):,.0f} rows/s", end="\r"
            )
    insert_s = time.perf_counter() - t0
    console.print(f"  {name}: {n:,} rows in {insert_s:.1f} s ({n / insert_s:,.0f} rows/s)      ")
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}  # this process's CPU (SQLite's work included: its thread is ours), load-proof
    for label, query in queries(store, now).items():
        await query()  # warm-up (caches, plans)
        samples, cpu_samples = [], []
        for _ in range(runs):
            t, c = time.perf_counter(), time.process_time()
            await query()
            samples.append((time.perf_counter() - t) * 1000)
            cpu_samples.append((time.process_time() - c) * 1000)
        timings[label] = statistics.median(samples)
        cpu[label] = statistics.median(cpu_samples)
    (day,) = await store.usage_totals(now - DAY, now)
    if explain_plans:
        await explain(store, now)
    await store.close()
    return {
        "rows": n,
        "insert_seconds": round(insert_s, 2),
        "insert_rows_per_s": round(n / insert_s),
        "rows_last_24h": day.requests,
        "error_rate_24h": round(day.errors / max(day.requests, 1), 4),
        "query_ms_median": {k: round(v, 2) for k, v in timings.items()},
        "query_cpu_ms_median": {k: round(v, 2) for k, v in cpu.items()},
        "load_average": os.getloadavg()[0],
    }


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next(
        (line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?"
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--explain", action="store_true", help="print the recent-rows queries' plans")
    args = ap.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="smolgate-bench-store-") as tmp:
        if args.backend in ("sqlite", "both"):
            results["sqlite"] = await run(
                "sqlite", SqliteStore(Path(tmp) / "bench.db"), args.rows, args.runs, args.explain
            )
        if args.backend in ("postgres", "both"):
            pg = await asyncio.to_thread(PostgresServer(durable=True).start)
            try:
                url = await asyncio.to_thread(pg.create_database)
                results["postgres"] = await run(
                    "postgres", PostgresStore(url), args.rows, args.runs, args.explain
                )
            finally:
                await asyncio.to_thread(pg.stop)
    heads = [f"{name} {kind}" for name in results for kind in ("wall", "cpu")]
    table = Table(f"query (median of {args.runs}, ms; target ≤ {TARGET_MS:g})", *heads)
    labels = next(iter(results.values()))["query_ms_median"]  # type: ignore[index]
    for label in labels:
        cells = []
        for r in results.values():
            ms, cpu = r["query_ms_median"][label], r["query_cpu_ms_median"][label]  # type: ignore[index]
            cells += [f"[{'green' if ms <= TARGET_MS else 'red'}]{ms:.2f}[/]", f"{cpu:.2f}"]
        table.add_row(label, *cells)
    table.add_row(
        "insert (rows/s)", *(c for r in results.values() for c in (f"{r['insert_rows_per_s']:,}", ""))
    )  # type: ignore[index]
    console.print(table)
    out = HERE / "results" / "store.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu_model(), "runs": args.runs, "results": results}, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
