"""Upstream stream decoding speed: this tree against a baseline git revision, in one run.

Decodes a recorded-shape Anthropic Messages stream, an OpenAI Responses stream and a Gemini
`streamGenerateContent` stream (reasoning, text, a tool call, usage; pings, events the decoders skip and
fields they ignore included) `--n` times each, in this tree and in the source
of `--baseline` (extracted with `git archive` into a temporary directory), alternating the two in
subprocesses for `--rounds` rounds, then prints the best seconds of each and the ratio baseline / current,
and whether both trees decoded the streams to the same canonical events. No sockets: decoders only.

    PYTHONPATH=$PWD/src .venv/bin/python bench/stream_decode.py --baseline 638ef2e --n 10000 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _sse(event: str, data: dict[str, object]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def anthropic_stream() -> bytes:
    usage = {"input_tokens": 812, "output_tokens": 1, "cache_read_input_tokens": 512}
    message = {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude", "usage": usage}
    out = [_sse("message_start", {"type": "message_start", "message": message})]
    out.append(_sse("ping", {"type": "ping"}))
    blocks: list[tuple[dict[str, object], list[dict[str, object]]]] = [
        (
            {"type": "thinking", "thinking": "", "signature": ""},
            [{"type": "thinking_delta", "thinking": "consider the question "}] * 20
            + [{"type": "signature_delta", "signature": "EqQBCkYIBxgCKkB" * 8}],
        ),
        ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "a few words "}] * 100),
        (
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}},
            [{"type": "input_json_delta", "partial_json": '{"city": "Par'}] * 10,
        ),
    ]
    for i, (start, deltas) in enumerate(blocks):
        out.append(
            _sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": start})
        )
        for d in deltas:
            out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}))
        out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    end = {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}}
    out.append(_sse("message_delta", {**end, "usage": {"output_tokens": 240}}))
    out.append(_sse("message_stop", {"type": "message_stop"}))
    return b"".join(out)


def responses_stream() -> bytes:
    resp = {
        "id": "resp_01",
        "object": "response",
        "created_at": 1700000000,
        "model": "gpt",
        "status": "in_progress",
    }
    ev = [("response.created", {"response": resp}), ("response.in_progress", {"response": resp})]
    rs = {"id": "rs_01", "type": "reasoning", "summary": []}
    ev.append(("response.output_item.added", {"output_index": 0, "item": rs}))
    ev += [
        ("response.reasoning_summary_text.delta", {"item_id": "rs_01", "summary_index": 0, "delta": "think "})
    ] * 20
    ev.append(("response.output_item.done", {"output_index": 0, "item": {**rs, "summary": [{"text": "…"}]}}))
    msg = {"id": "msg_01", "type": "message", "role": "assistant", "content": []}
    ev.append(("response.output_item.added", {"output_index": 1, "item": msg}))
    part = {"type": "output_text", "text": "", "annotations": []}
    ev.append(("response.content_part.added", {"item_id": "msg_01", "content_index": 0, "part": part}))
    delta = {"item_id": "msg_01", "output_index": 1, "content_index": 0, "delta": "a few words "}
    ev += [("response.output_text.delta", delta)] * 100
    ev.append(("response.output_text.done", {"item_id": "msg_01", "content_index": 0, "text": "…"}))
    ev.append(("response.content_part.done", {"item_id": "msg_01", "content_index": 0, "part": part}))
    ev.append(("response.output_item.done", {"output_index": 1, "item": msg}))
    fc = {
        "id": "fc_01",
        "type": "function_call",
        "call_id": "call_01",
        "name": "get_weather",
        "arguments": "",
    }
    ev.append(("response.output_item.added", {"output_index": 2, "item": fc}))
    ev += [("response.function_call_arguments.delta", {"item_id": "fc_01", "delta": '{"city": "Par'})] * 10
    ev.append(("response.function_call_arguments.done", {"item_id": "fc_01", "arguments": "{}"}))
    ev.append(("response.output_item.done", {"output_index": 2, "item": fc}))
    usage = {"input_tokens": 812, "output_tokens": 240, "input_tokens_details": {"cached_tokens": 512}}
    ev.append(("response.completed", {"response": {**resp, "status": "completed", "usage": usage}}))
    return b"".join(_sse(name, {"type": name, **body}) for name, body in ev)


def gemini_stream() -> bytes:
    """camelCase, as the API sends it; the tool call's arguments have snake_case keys (user data)."""
    ratings = [{"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"}]

    def chunk(parts: list[dict[str, object]], **extra: object) -> bytes:
        cand: dict[str, object] = {"content": {"role": "model", "parts": parts}, "index": 0}
        cand.update(extra)
        body = {"candidates": [cand], "modelVersion": "gemini-2.5-flash", "responseId": "resp_01"}
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\r\n\r\n"

    out = [chunk([{"text": "consider the question ", "thought": True}]) for _ in range(20)]
    out.append(chunk([{"text": "", "thought": True, "thoughtSignature": "EqQBCkYIBxgCKkB" * 8}]))
    out += [chunk([{"text": "a few words "}], safetyRatings=ratings) for _ in range(100)]
    call = {"id": "call_01", "name": "get_weather", "args": {"city_name": "Paris", "units": "metric"}}
    usage = {"promptTokenCount": 812, "candidatesTokenCount": 240, "totalTokenCount": 1052}
    last = chunk([{"functionCall": call}], finishReason="STOP")
    out.append(last[: -len(b"}\r\n\r\n")] + b',"usageMetadata":' + json.dumps(usage).encode() + b"}\r\n\r\n")
    return b"".join(out)


STREAMS = ("anthropic", "responses", "gemini")


def measure(n: int) -> dict[str, float | str]:
    """Seconds to decode each stream `n` times with this interpreter's `smolgate`, and a digest of the
    canonical events (the same digest in both trees shows the decoders agree)."""
    import hashlib

    import msgspec

    from smolgate.protocols.anthropic_stream import AnthropicStreamDecoder
    from smolgate.protocols.gemini_stream import GeminiStreamDecoder
    from smolgate.protocols.openai_decoders import ResponsesStreamDecoder

    out: dict[str, float | str] = {}
    for name, make, wire in (
        ("anthropic", AnthropicStreamDecoder, anthropic_stream()),
        ("responses", ResponsesStreamDecoder, responses_stream()),
        ("gemini", GeminiStreamDecoder, gemini_stream()),
    ):
        for _ in range(max(1, n // 10)):  # warm-up
            d = make()
            events = d.feed(wire) + d.close()
        t0 = time.perf_counter()
        for _ in range(n):
            d = make()
            d.feed(wire)
            d.close()
        out[name] = time.perf_counter() - t0
        out[name + "_events"] = hashlib.sha256(msgspec.json.encode(_stable(events))).hexdigest()[:16]
    return out


def _stable(events: list[object]) -> list[object]:
    """The events without what differs per run (the arrival time in MessageStart)."""
    import msgspec

    return [
        {**msgspec.to_builtins(e), "created": 0} if type(e).__name__ == "MessageStart" else e for e in events
    ]


def payload_only(n: int) -> dict[str, float]:
    """The layer the typed decoders changed, without SSE framing: every `data:` payload of each stream
    through `orjson.loads` (what the dict walkers started from) and through the typed wire union."""
    import orjson

    from smolgate.protocols import anthropic_wire, gemini_wire, openai_responses_wire
    from smolgate.protocols.sse import SSEParser

    out: dict[str, float] = {}
    for name, wire, typed in (
        ("anthropic", anthropic_stream(), anthropic_wire.EVENTS.decode),
        ("responses", responses_stream(), openai_responses_wire.EVENTS.decode),
        ("gemini", gemini_stream(), gemini_wire.decode),
    ):
        datas = [m.data for m in SSEParser().feed(wire)]
        for label, decode in (("orjson", orjson.loads), ("typed", typed)):
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                for _ in range(n):
                    for d in datas:
                        decode(d)
                best = min(best, time.perf_counter() - t0)
            out[f"{name}_{label}"] = best
        out[f"{name}_speedup"] = round(out[f"{name}_orjson"] / out[f"{name}_typed"], 3)
    return out


def _child(n: int, src: Path) -> dict[str, float | str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    run = [sys.executable, __file__, "--n", str(n), "--child"]
    res = subprocess.run(run, env=env, check=True, capture_output=True, text=True)
    result: dict[str, float | str] = json.loads(res.stdout)
    return result


def _best(runs: list[dict[str, float | str]]) -> dict[str, float | str]:
    """The fastest of each figure over the rounds (a shared machine only ever adds time)."""
    out = dict(runs[0])
    for r in runs[1:]:
        for k, v in r.items():
            if isinstance(v, float):
                out[k] = min(float(out[k]), v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="decodes of each stream per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of current and baseline")
    ap.add_argument("--baseline", help="git revision to compare against (its src/ is extracted)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.n)))
        return
    names = STREAMS
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            archive = subprocess.run(
                ["git", "archive", args.baseline, "src"], cwd=ROOT, check=True, capture_output=True
            )
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        cur_runs, base_runs = [], []
        for _ in range(args.rounds):  # interleaved, so load on the machine hits both alike
            cur_runs.append(_child(args.n, ROOT / "src"))
            if args.baseline:
                base_runs.append(_child(args.n, Path(tmp) / "src"))
    cur = _best(cur_runs)
    result: dict[str, object] = {"n": args.n, "rounds": args.rounds, "current": cur}
    if base_runs:
        base = _best(base_runs)
        result["baseline"] = {"rev": args.baseline, **base}
        result["speedup"] = {k: round(float(base[k]) / float(cur[k]), 3) for k in names}
        result["same_events"] = all(base[k + "_events"] == cur[k + "_events"] for k in names)
    result["payload_only"] = payload_only(args.n)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
