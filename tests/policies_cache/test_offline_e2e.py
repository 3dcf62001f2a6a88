"""The offline fallback end to end: the fake upstreams (real HTTP servers on 127.0.0.1) are killed mid-run and
the official SDKs keep getting answers from a tiny local model, marked by `x-smolgate-fallback: offline` and in
the SQLite ledger; when the upstream comes back on its port, the breaker's half-open probe lets traffic return
to it. Client errors never fall back, and an alias that turns the fallback off reports the outage."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anthropic
import ollama
import openai
import pytest
from google import genai
from google.genai import types

from tests.fakes.harness import FakeUpstream
from tests.gateway_server import GatewayServer

from .conftest import UPSTREAM_KEYS, ledger_row, providers, served_by_metric

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))  # tests/engine modules by basename
from checkpoints import make_checkpoint


@pytest.fixture(scope="module")
def gw(fakes: dict[str, FakeUpstream], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp = tmp_path_factory.mktemp("offline")
    ckpt, _ = make_checkpoint("smollm2-text", tmp / "tiny-smollm2")
    cfg = providers({k: f.url for k, f in fakes.items()}).replace(
        "    timeouts:", "    breaker: {failures: 1, cooldown: 0.2}\n    timeouts:"
    ) + (
        f"  - {{name: local, protocol: local, model: '{ckpt}', dtype: float32}}\n"
        "models:\n"
        "  - {name: chat, targets: [{provider: up-openai, model: gpt-fake}]}\n"
        "  - {name: claude, targets: [{provider: up-anthropic, model: claude-fake}]}\n"
        "  - name: both\n"
        "    targets: [{provider: up-openai, model: gpt-fake}]\n"
        "    fallbacks: [claude]\n"
        "  - {name: strict, targets: [{provider: up-openai, model: gpt-fake}], offline_fallback: 'off'}\n"
        f"store: 'sqlite:///{tmp / 'ledger.db'}'\n"
        "ledger: {flush_interval: 0.05}\n"
        "retry: {attempts: 3, deadline: 20}\n"
    )
    with GatewayServer(cfg) as g:
        yield g


def _oa(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def _ask(gw: GatewayServer, model: str = "chat", stream: bool = False) -> tuple[str, str | None, str]:
    """(text, x-smolgate-fallback, x-request-id) of one OpenAI Chat call."""
    p = f"hello {uuid.uuid4().hex[:8]}"
    raw = _oa(gw).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": p}], max_tokens=4, stream=stream
    )
    body = raw.parse()
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in body if c.choices)
    else:
        text = body.choices[0].message.content or ""
    return text, raw.headers.get("x-smolgate-fallback"), raw.headers["x-request-id"]


def _restart(fakes: dict[str, FakeUpstream], name: str) -> None:
    """A new fake of the same kind, on the port the gateway's config points at."""
    old = fakes[name]
    new = type(old)(api_key=UPSTREAM_KEYS[name])  # type: ignore[call-arg]
    new.port = old.port
    fakes[name] = new.start()


def test_answers_continue_while_every_upstream_is_down_then_return_to_it(gw, fakes):
    text, fb, rid = _ask(gw)
    assert fb is None and "hello" in text  # the fake upstream echoes
    assert ledger_row(gw.url, rid)["served_by"] is None

    fakes["openai"].stop()
    fakes["anthropic"].stop()
    try:
        for stream in (False, True):
            _, fb, rid = _ask(gw, stream=stream)
            assert fb == "offline"
            row = ledger_row(gw.url, rid)
            assert (row["served_by"], row["provider"], row["local"], row["status"]) == (
                "offline",
                "local",
                True,
                200,
            )
            assert row["stream"] is stream and row["cost_usd"] == 0

        _, fb, _ = _ask(gw, model="both")  # the alias's fallbacks are tried first, then the local model
        assert fb == "offline"
        assert served_by_metric(gw.url, "chat", "offline") == 2

        c = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0, timeout=60)
        msgs = [{"role": "user", "content": "hi"}]
        raw = c.messages.with_raw_response.create(model="claude", max_tokens=4, messages=msgs)  # type: ignore[arg-type]
        assert raw.headers["x-smolgate-fallback"] == "offline" and raw.parse().type == "message"
        raw = c.messages.with_raw_response.create(model="claude", max_tokens=4, messages=msgs, stream=True)  # type: ignore[arg-type]
        assert raw.headers["x-smolgate-fallback"] == "offline"
        assert [e.type for e in raw.parse()][-1] == "message_stop"

        g = genai.Client(api_key="unused", http_options=types.HttpOptions(base_url=gw.url))
        cfg = types.GenerateContentConfig(max_output_tokens=4)
        assert g.models.generate_content(model="chat", contents="hi", config=cfg).candidates
        o = ollama.Client(host=gw.url, timeout=60)
        assert o.chat(model="chat", messages=msgs, options={"num_predict": 4}).done

        with pytest.raises(openai.APIStatusError) as err:  # fallback off for this alias: the outage shows
            _ask(gw, model="strict")
        assert err.value.status_code in (502, 503)
    finally:
        _restart(fakes, "openai")
        _restart(fakes, "anthropic")

    # back: once the breaker's cooldown is over, its half-open probe reaches the upstream and traffic returns
    for _ in range(200):
        text, fb, rid = _ask(gw)
        if fb is None:
            break
        time.sleep(0.05)
    assert fb is None and "hello" in text
    assert ledger_row(gw.url, rid)["provider"] == "up-openai"
    assert fakes["openai"].requests  # the restarted upstream answered
    _, fb, _ = _ask(gw)
    assert fb is None


def test_client_errors_never_fall_back(gw, fakes):
    client = _oa(gw)
    with pytest.raises(openai.BadRequestError):  # the upstream's 400: the client's mistake, shown as it is
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "FAIL_STATUS_400 x"}], max_tokens=4
        )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])


def test_an_upstream_429_falls_back(gw, fakes):
    raw = _oa(gw).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "FAIL_STATUS_429 x"}], max_tokens=4
    )
    assert raw.headers["x-smolgate-fallback"] == "offline"
