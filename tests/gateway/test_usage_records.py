"""Usage reaches the request record (and so the ledger and its cost) for streams through every upstream protocol:
the gateway asks each upstream for stream usage where the protocol allows, and each decoder turns the upstream's
own counting convention (Anthropic's input without cache reads, Gemini's candidates without thoughts…) into the
canonical inclusive counts. The fakes report `USAGE_DETAIL` usage in their protocol's real shape."""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from smolgate.telemetry import RequestRecord

PROMPT = "count USAGE_DETAIL tokens for me please"  # 6 words: the fakes count words as tokens
IN, CACHED, REASONING = 6, 3, 3  # the fakes: half the prompt read from cache, 3 reasoning tokens


class Recorder:
    """A test observer: every finished request's record, by request id."""

    def __init__(self) -> None:
        self.records: queue.Queue[RequestRecord] = queue.Queue()

    def finished(self, rec: RequestRecord) -> None:
        self.records.put(rec)

    def get(self, rid: str) -> RequestRecord:
        while True:  # the observer runs after the reply's last byte: wait for it (bounded by the timeout)
            rec = self.records.get(timeout=30)
            if rec.request_id == rid:
                return rec


@pytest.fixture(scope="module")
def recorder(gateway) -> Iterator[Recorder]:
    rec = Recorder()
    observers = gateway.app.runtime.observers
    observers.append(rec)
    yield rec
    observers.remove(rec)


# upstream protocol → (answer words the fake says back, canonical cached, canonical reasoning)
# Anthropic reports thinking inside output_tokens with no separate count; Ollama reports neither detail.
EXPECTED = {
    "openai": (CACHED, REASONING),
    "openai-responses": (CACHED, REASONING),
    "anthropic": (CACHED, 0),
    "gemini": (CACHED, REASONING),
    "ollama": (0, 0),
}


def answer_words(text: str) -> int:
    return len(text.split(" "))


@pytest.mark.parametrize("upstream", list(EXPECTED))
def test_a_stream_records_the_upstreams_usage(gateway, recorder: Recorder, upstream: str):
    rid = f"usage-{uuid.uuid4().hex[:12]}"
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model=f"via-{upstream}",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": rid},
    )
    text, seen = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            seen = chunk.usage
    rec = recorder.get(rid)
    cached, reasoning = EXPECTED[upstream]
    out = answer_words(text) + (REASONING if upstream != "ollama" else 0)
    assert rec.stream and rec.status == 200 and rec.error_kind is None
    assert rec.last is not None and rec.last.upstream_protocol == upstream
    assert rec.usage is not None
    assert (
        rec.usage.input_tokens,
        rec.usage.cached_tokens,
        rec.usage.output_tokens,
        rec.usage.reasoning_tokens,
    ) == (IN, cached, out, reasoning)
    assert rec.ttft_ms is not None
    # and the client saw the same figures in its own usage chunk
    assert seen is not None and (seen.prompt_tokens, seen.completion_tokens) == (IN, out)


@pytest.mark.parametrize("upstream", ["anthropic", "gemini"])
def test_a_non_stream_records_the_same_usage(gateway, recorder: Recorder, upstream: str):
    rid = f"usage-{uuid.uuid4().hex[:12]}"
    client = anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0)
    msg = client.messages.create(
        model=f"via-{upstream}",
        max_tokens=100,
        messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"x-request-id": rid},
    )
    rec = recorder.get(rid)
    cached, reasoning = EXPECTED[upstream]
    text = "".join(b.text for b in msg.content if b.type == "text")
    out = answer_words(text) + REASONING
    assert not rec.stream and rec.usage is not None
    assert (rec.usage.input_tokens, rec.usage.cached_tokens, rec.usage.output_tokens) == (IN, cached, out)
    assert rec.usage.reasoning_tokens == reasoning
    # the Anthropic client sees input without the cache reads, as Anthropic counts
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens) == (IN - cached, cached)


def test_a_stream_the_client_leaves_keeps_the_prompt_usage_told_early(gateway, recorder: Recorder):
    """Anthropic tells the prompt's usage in message_start; a client that hangs up mid-stream has still been
    billed for its prompt, so the record keeps it."""
    rid = f"usage-{uuid.uuid4().hex[:12]}"
    body = {
        "model": "via-anthropic",
        "messages": [{"role": "user", "content": "count USAGE_DETAIL SLOW tokens"}],  # 4 tokens, 2 cached
        "stream": True,
    }
    with httpx.stream(
        "POST", gateway.url + "/v1/chat/completions", json=body, headers={"x-request-id": rid}
    ) as r:
        for line in r.iter_lines():
            if '"content"' in line:
                break  # the first words arrived: hang up while the upstream is still answering
    rec = recorder.get(rid)
    assert rec.usage is not None and (rec.usage.input_tokens, rec.usage.cached_tokens) == (4, 2)
