"""Context limits on the embedded engine, and "prompt too long" in every client protocol's own shape.

A prompt that does not fit the model is refused before any byte of a response is sent (a 200 followed by an
in-stream error made Gemini CLI exit 0 with nothing and Codex retry five times), with the error each client's
own tooling recognises: Claude Code compacts on Anthropic's "prompt is too long: N tokens > M maximum" and
lowers max_tokens on "input length and `max_tokens` exceed context limit: N + K > M"; OpenAI clients look for
the code `context_length_exceeded`. An upstream's own "too long" error reaches every client the same way.

Without max_tokens the engine generates to the end of the context, as llama.cpp, Ollama and vLLM do (a fixed
cap of 512 stopped aider with "exceeded output limit").
"""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from tests.fakes.harness import FakeUpstream
from tests.gateway.conftest import matrix_config
from tests.gateway_server import GatewayServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))  # tests/engine modules by basename
from checkpoints import make_checkpoint

CONTEXT = 640  # the tiny model's context: past 512, so "no max_tokens" must go beyond the old fixed cap
LONG = "word " * 800  # > CONTEXT tokens with the SmolLM2 vocabulary
CLAUDE_CODE_COMPACT = re.compile(r"prompt is too long[^0-9]*(\d+)\s*tokens?\s*>\s*(\d+)", re.I)  # its regex
CLAUDE_CODE_MAX = re.compile(r"input length and `max_tokens` exceed context limit: (\d+) \+ (\d+) > (\d+)")


@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory) -> Path:
    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("ctx") / "tiny-smollm2")
    cfg = json.loads((path / "config.json").read_text())
    cfg["max_position_embeddings"] = CONTEXT
    (path / "config.json").write_text(json.dumps(cfg))
    return path


@pytest.fixture(scope="module")
def local(tiny_text_model):
    cfg = (
        f"providers:\n  - name: local\n    protocol: local\n    model: {tiny_text_model}\n"
        "models:\n  - name: tiny\n    targets: [{provider: local, model: default}]\n"
    )
    with GatewayServer(cfg) as gw:
        yield gw


def _post(gw: GatewayServer, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, headers=headers or {}, timeout=60)


def _ask(protocol: str, text: str, stream: bool, max_tokens: int | None = None) -> tuple[str, dict]:
    """(path, body) for one user turn in `protocol`."""
    if protocol == "anthropic":
        return "/v1/messages", {
            "model": "tiny",
            "max_tokens": max_tokens or 16,
            "stream": stream,
            "messages": [{"role": "user", "content": text}],
        }
    if protocol == "openai":
        body = {"model": "tiny", "stream": stream, "messages": [{"role": "user", "content": text}]}
        return "/v1/chat/completions", body | ({"max_tokens": max_tokens} if max_tokens else {})
    if protocol == "responses":
        body = {"model": "tiny", "stream": stream, "input": text}
        return "/v1/responses", body | ({"max_output_tokens": max_tokens} if max_tokens else {})
    if protocol == "gemini":
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
        if max_tokens:
            body["generationConfig"] = {"maxOutputTokens": max_tokens}
        return f"/v1beta/models/tiny:{method}", body
    body = {"model": "tiny", "stream": stream, "messages": [{"role": "user", "content": text}]}
    return "/api/chat", body | ({"options": {"num_predict": max_tokens}} if max_tokens else {})


def _assert_too_long(protocol: str, r: httpx.Response, limit: int | None) -> None:
    """The protocol's own "prompt too long" error (limit None: no counts known, e.g. Ollama upstream)."""
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")  # a plain error, not a stream
    err = r.json()
    if protocol == "anthropic":
        assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
        message = err["error"]["message"]
        assert "prompt is too long" in message.lower(), err  # what Claude Code classifies as prompt_too_long
        if limit is not None:  # and the counts its reactive compaction parses
            m = CLAUDE_CODE_COMPACT.search(message)
            assert m and int(m.group(2)) == limit and int(m.group(1)) > limit, err
    elif protocol in ("openai", "responses"):
        e = err["error"]
        assert e["code"] == "context_length_exceeded" and e["type"] == "invalid_request_error"
        assert e["param"] == ("messages" if protocol == "openai" else "input")
        if protocol == "openai" and limit is not None:
            assert f"maximum context length is {limit} tokens" in e["message"]
    elif protocol == "gemini":
        e = err["error"]
        assert e["code"] == 400 and e["status"] == "INVALID_ARGUMENT"
        if limit is not None:
            m = re.fullmatch(
                r"The input token count \((\d+)\) exceeds the maximum number of tokens allowed "
                r"\((\d+)\)\.",
                e["message"],
            )
            assert m and int(m.group(2)) == limit and int(m.group(1)) > limit, e
    else:
        assert err["error"].startswith("the prompt is longer than the context length"), err


PROTOCOLS = ["anthropic", "openai", "responses", "gemini", "ollama"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_prompt_over_the_context_is_refused_up_front_in_each_protocols_shape(local, protocol, stream):
    path, body = _ask(protocol, LONG, stream)
    _assert_too_long(protocol, _post(local, path, body), CONTEXT)


def test_claude_code_can_shrink_max_tokens_from_the_anthropic_error(local):
    """A prompt that fits, with a max_tokens that does not: Claude Code parses the counts and asks again."""
    path, body = _ask("anthropic", "Hello there", False, max_tokens=32000)
    r = _post(local, path, body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    m = CLAUDE_CODE_MAX.search(r.json()["error"]["message"])
    assert m and int(m.group(2)) == 32000 and int(m.group(3)) == CONTEXT, r.text
    body["max_tokens"] = int(m.group(3)) - int(m.group(1))  # what fits
    again = _post(local, path, body)
    assert again.status_code == 200, again.text
    usage = again.json()["usage"]
    assert usage["input_tokens"] == int(m.group(1)) and usage["output_tokens"] <= body["max_tokens"]


def test_openai_client_sees_context_length_exceeded_with_both_counts(local):
    import openai

    client = openai.OpenAI(base_url=local.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="tiny", max_tokens=10_000, messages=[{"role": "user", "content": "Hi"}]
        )
    assert info.value.code == "context_length_exceeded"
    assert f"maximum context length is {CONTEXT} tokens" in info.value.message
    assert "10000 in the completion" in info.value.message


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
def test_no_max_tokens_generates_to_the_end_of_the_context(local, protocol):
    path, body = _ask(protocol, "Tell me a long story.", False)
    r = _post(local, path, body)
    assert r.status_code == 200, r.text
    d = r.json()
    if protocol == "openai":
        usage, done = d["usage"], d["choices"][0]["finish_reason"]
        prompt, out = usage["prompt_tokens"], usage["completion_tokens"]
    else:
        prompt, out, done = d["prompt_eval_count"], d["eval_count"], d["done_reason"]
    # the tiny random model never says EOS first: it runs until the context is full, well past the old 512 cap
    assert done == "length" and out > 512 and prompt + out == CONTEXT


def test_open_ended_requests_share_a_tight_cache_budget(tiny_text_model):
    """Open-ended requests reserve cache room as they go, so two run together in a budget that holds one whole
    context and a half; the one the budget cannot grow ends with "length" instead of overflowing the cache."""
    from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, Limits, TextPart

    engine = Engine.load(str(tiny_text_model), limits=Limits(kv_tokens=1536))
    engine.context_length = 1024  # two whole contexts would need 2048 cache positions
    try:
        msgs = [ChatMessage("user", [TextPart("Tell me a long story.")])]
        prompt = engine.count_prompt_tokens(msgs)
        results: list = []

        def run() -> None:
            results.append(engine.generate(msgs, GenerationParams(max_tokens=None)))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert engine.scheduler.peak_batch == 2  # both admitted at once, not one after the other
        lengths = sorted(r.completion_tokens for r in results)
        assert all(r.finish_reason == "length" for r in results)
        assert lengths[1] == 1024 - prompt and 512 <= lengths[0] < lengths[1]
    finally:
        engine.close()


# ---------------------------------------------------------------- an upstream's own "too long" error

OPENAI_TOO_LONG = (
    "This model's maximum context length is 128000 tokens. However, your messages resulted "
    "in 130512 tokens. Please reduce the length of the messages."
)
OLLAMA_TOO_LONG = (
    "the prompt is longer than the context length currently available to the model; shorten "
    "the prompt, adjust the context length in settings, or use a model with a longer context "
    "length"
)
UPSTREAM_ERRORS = {  # each API's real reply to an over-long prompt
    "openai": (
        400,
        {
            "error": {
                "message": OPENAI_TOO_LONG,
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
    ),
    "anthropic": (
        400,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "prompt is too long: 210118 tokens > 200000 maximum",
            },
        },
    ),
    "gemini": (
        400,
        {
            "error": {
                "code": 400,
                "status": "INVALID_ARGUMENT",
                "message": (
                    "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576)."
                ),
            }
        },
    ),
    "ollama": (400, {"error": OLLAMA_TOO_LONG}),
}
COUNTS = {"openai": 128000, "anthropic": 200000, "gemini": 1048576, "ollama": None}


class TooLongUpstream(FakeUpstream):
    """Every upstream protocol's generation route answers with that API's "prompt too long" error."""

    def routes(self, app: web.Application) -> None:
        for path, proto in (
            ("/v1/chat/completions", "openai"),
            ("/v1/responses", "openai"),
            ("/v1/messages", "anthropic"),
            ("/api/chat", "ollama"),
        ):
            app.router.add_post(path, self._reply(proto))
        app.router.add_post("/v1beta/models/{tail}", self._reply("gemini"))

    def _reply(self, proto: str):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.Response:
            status, body = UPSTREAM_ERRORS[proto]
            return web.json_response(body, status=status)

        return handler


@pytest.fixture(scope="module")
def too_long_gateway():
    fake = TooLongUpstream().start()
    urls = {p: fake.url for p in ("openai", "anthropic", "gemini", "ollama")}
    urls["openai-responses"] = fake.url
    with GatewayServer(matrix_config(urls)) as gw:
        yield gw
    fake.stop()


# Same-protocol pairs pass the upstream's error through as it is (and a Gemini client's count-less 400 carries
# nothing more to translate): left out, they would not test the translation.
PAIRS = [(c, u) for c in PROTOCOLS for u in COUNTS if c != u and not (c == "gemini" and u == "ollama")]


@pytest.mark.parametrize(("client", "upstream"), PAIRS, ids=[f"{c}-via-{u}" for c, u in PAIRS])
def test_upstream_too_long_reaches_each_client_in_its_own_shape(too_long_gateway, upstream, client):
    path, body = _ask(client, "Hello", stream=client in ("gemini", "ollama"))
    path = path.replace("tiny", f"via-{upstream}")
    if "model" in body:
        body["model"] = f"via-{upstream}"
    _assert_too_long(client, _post(too_long_gateway, path, body), COUNTS[upstream])
