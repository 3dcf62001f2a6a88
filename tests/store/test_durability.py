"""The ledger through a real gateway: SDK requests become rows; `smolgate serve` writes its buffer on SIGTERM; and
after `kill -9` under load, every request that finished more than one flush interval before the kill has its row."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from smolgate.config import parse_config
from smolgate.store.open import open_store
from tests.fakes.openai_upstream import OpenAIUpstream
from tests.gateway_server import GatewayServer
from tests.serve_process import start_serve

FLUSH = 0.2  # ledger.flush_interval of the served gateways
MARGIN = 1.0  # seconds past the interval for the flush itself and the commit, on a busy 2-core machine


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    up = OpenAIUpstream(api_key="sk-up").start()
    yield up
    up.stop()


def config(upstream: OpenAIUpstream, db: Path | str) -> str:
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    return (
        f"providers:\n  - name: up\n    protocol: openai\n    base_url: {upstream.url}/v1\n"
        "    accounts:\n      - {name: main-key, api_key: sk-up}\n"
        "models:\n  - name: fast\n    targets: [{provider: up, model: gpt-fake}]\n"
        f"store: '{url}'\nledger: {{flush_interval: {FLUSH}}}\n"
    )


async def rows_of(db: Path | str) -> dict[str, object]:
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    store = await open_store(parse_config(f"store: '{url}'\n"))
    try:
        return {r.request_id: r for r in await store.recent_usage(limit=100_000)}
    finally:
        await store.close()


def test_sdk_requests_become_rows(upstream: OpenAIUpstream, store_url: str) -> None:
    db = store_url  # each backend
    with GatewayServer(config(upstream, db)) as gw:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="none", max_retries=0)
        plain = client.chat.completions.with_raw_response.create(
            model="fast", messages=[{"role": "user", "content": "hi"}]
        )
        with client.chat.completions.with_streaming_response.create(
            model="fast", messages=[{"role": "user", "content": "hi"}], stream=True
        ) as streamed:
            for _ in streamed.iter_lines():
                pass
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    rows = asyncio.run(rows_of(db))  # the gateway stopped: its buffer was written
    one = rows[plain.headers["x-request-id"]]
    assert (one.alias, one.provider, one.account, one.upstream_model) == (
        "fast",
        "up",
        "main-key",
        "gpt-fake",
    )  # type: ignore[attr-defined]
    assert (one.client_protocol, one.status, one.stream, one.local) == ("openai", 200, False, False)  # type: ignore[attr-defined]
    assert one.input_tokens > 0 and one.output_tokens > 0  # type: ignore[attr-defined]
    two = rows[streamed.headers["x-request-id"]]
    assert two.stream and two.status == 200 and two.ttft_ms is not None  # type: ignore[attr-defined]
    refused = rows[missing.value.response.headers["x-request-id"]]
    assert (refused.status, refused.alias) == (404, "nope")  # type: ignore[attr-defined]


def serve(cfg_text: str, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    cfg = tmp_path / "smolgate.yaml"
    cfg.write_text(cfg_text)
    return start_serve(cfg)


def chat(client: httpx.Client, rid: str) -> None:
    r = client.post(
        "/v1/chat/completions",
        json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-request-id": rid},
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == rid, r.text


def test_sigterm_writes_the_buffer(upstream: OpenAIUpstream, tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    proc, url = serve(
        config(upstream, db).replace(f"flush_interval: {FLUSH}", "flush_interval: 600"), tmp_path
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            for i in range(20):
                chat(client, f"term-{i}")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # uvicorn shuts down gracefully (lifespan → Runtime.stop), then re-raises the signal it caught: -SIGTERM
    assert proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in out, out
    rows = asyncio.run(rows_of(db))
    assert {f"term-{i}" for i in range(20)} <= set(rows)


def test_kill_9_loses_no_row_older_than_the_flush_interval(upstream: OpenAIUpstream, tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    proc, url = serve(config(upstream, db), tmp_path)
    finished: dict[str, float] = {}  # request id -> when its answer was complete (client side, monotonic)
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                rid = f"k9-{worker}-{i}"
                try:
                    chat(client, rid)
                except httpx.HTTPError:
                    return  # the server is gone
                finished[rid] = time.monotonic()
                i += 1

    workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    try:
        for w in workers:
            w.start()
        time.sleep(3)  # a few seconds of load: many flushes, and requests in flight at the kill
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(10)
    finally:
        stop.set()
        for w in workers:
            w.join(30)
        if proc.poll() is None:
            proc.kill()
    rows = asyncio.run(rows_of(db))
    due = {rid for rid, t in finished.items() if t < killed - FLUSH - MARGIN}
    assert len(due) > 50, "the load did not get going"
    missing = sorted(due - set(rows))
    assert not missing, f"{len(missing)} of {len(due)} rows lost, e.g. {missing[:5]}"
