"""Privacy benchmark: what `redact` adds to a request, and what restoring adds to a streamed answer.

The prompt is ~4k tokens (~16,000 characters) of this repository's own prose and code as a conversation (a
system prompt, three turns and a tool result), with ten personal values and secrets sprinkled in; a second run
uses the same prompt without them. Redaction is timed end to end (`Privacy.plan`: detectors over every text,
placeholders, the rebuilt request), the median and the best of `--runs` (the best is the cost without
scheduling noise). The restorer is timed over a 2,000-delta answer with placeholders split across deltas,
against the same stream passed through untouched. Target (issue #19): ≤ 0.3 ms per 4k-token prompt.

    .venv/bin/python bench/privacy.py [--runs 200]

Writes bench/results/privacy.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from smolgate.canonical import Event, Message, Origin, Request, Text, TextDelta, ToolCall, ToolResult
from smolgate.config import parse_config
from smolgate.policies.privacy import Privacy
from smolgate.policies.restore import Restorer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
console = Console()
VALUES = [
    "jane.doe@example.com",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "203.0.113.42",
    "sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "(415) 555-2671",
    "2001:db8::1",
    "bob@example.org",
]


def prompt(with_values: bool) -> Request:
    prose = (ROOT / "docs" / "architecture.md").read_text()
    code = (ROOT / "src" / "smolgate" / "dispatch.py").read_text()
    text = (prose + code)[:16_000]
    parts = [text[i : i + 3200] for i in range(0, 16_000, 3200)]
    if with_values:
        parts = [p + f" Contact {VALUES[2 * i]} or {VALUES[2 * i + 1]}." for i, p in enumerate(parts)]
    return Request(
        model="m",
        system=[Text(text=parts[0])],
        messages=[
            Message(role="user", content=[Text(text=parts[1])]),
            Message(role="assistant", content=[ToolCall(id="c", name="f", arguments='{"q": "x"}')]),
            Message(role="user", content=[ToolResult(call_id="c", content=[Text(text=parts[2])])]),
            Message(role="assistant", content=[Text(text=parts[3])]),
            Message(role="user", content=[Text(text=parts[4])]),
        ],
        origin=Origin("openai", privacy="redact"),
    )


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """(median, best) in microseconds."""
    fn()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e6)
    return statistics.median(samples), min(samples)


def restore_cost(runs: int) -> tuple[float, float]:
    """(µs per delta restored, µs per delta passed through) over a 2,000-delta answer."""
    values = {"EMAIL_1": VALUES[0], "PHONE_1": VALUES[1]}
    answer = "Write to ⟦EMAIL_1⟧ or call ⟦PHONE_1⟧ about the invoice, thanks. " * 100
    deltas: list[Event] = [TextDelta(index=0, text=answer[i : i + 3]) for i in range(0, len(answer), 3)][
        :2000
    ]

    async def source() -> AsyncIterator[Event]:
        for d in deltas:
            yield d

    async def drain(it: AsyncIterator[Event]) -> None:
        async for _ in it:
            pass

    r = Restorer(values)
    loop = asyncio.new_event_loop()
    with_restore = timed(lambda: loop.run_until_complete(drain(r.stream(source()))), runs // 10 or 1)
    plain = timed(lambda: loop.run_until_complete(drain(source())), runs // 10 or 1)
    loop.close()
    return with_restore[1] / len(deltas), plain[1] / len(deltas)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    privacy = Privacy(parse_config("{}"))
    chars = 16_000
    results = {}
    for label, with_values in (("4k-token prompt, 10 values", True), ("4k-token prompt, no values", False)):
        req = prompt(with_values)
        plan = privacy.plan(req)
        assert not with_values or all(v not in str(plan.request) for v in VALUES)
        median, best = timed(lambda req=req: privacy.plan(req), args.runs)
        results[label] = {"median_us": round(median, 1), "best_us": round(best, 1), "chars": chars}
    per_delta, plain = restore_cost(args.runs)
    results["restore, per streamed delta"] = {"us": round(per_delta, 3), "passthrough_us": round(plain, 3)}
    table = Table("case", "median µs", "best µs")
    for label, r in results.items():
        if "median_us" in r:
            table.add_row(label, str(r["median_us"]), str(r["best_us"]))
    console.print(table)
    console.print(f"restore: {per_delta:.2f} µs per delta (a pass-through generator: {plain:.2f} µs)")
    out = HERE / "results" / "privacy.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": args.runs, "target_us": 300, "results": results}, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
