"""What the console's browser tests stand in front of: a real `smolgate serve` subprocess with a real SQLite store,
a fake OpenAI upstream that can be told to answer 429 (the account then cools down), a fake Anthropic upstream
(the playground's wire view shows a request converted to Anthropic's protocol) and the tiny random SmolVLM2 on
the embedded engine (the playground streams from it with an image attached)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from tests.fakes.anthropic_upstream import AnthropicUpstream
from tests.fakes.fault_upstream import FaultUpstream
from tests.fakes.openai_upstream import _err
from tests.serve_process import start_serve

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1] / "engine")
)  # tests/engine modules import by basename
from checkpoints import make_checkpoint

ADMIN_KEY = "adm-console-test-key-0123456789"
OPENAI_KEY = "sk-up-console-main"
EXTRA_KEY = "sk-up-console-added-in-the-ui"  # an account added through the Accounts page
ANTHROPIC_KEY = "sk-ant-up-console"
PRICE_IN, PRICE_OUT = 1000.0, 2000.0  # USD per million tokens of the fake model: every request costs cents
COOLDOWN_S = 6  # the Retry-After of the fake's 429: long enough to see, short enough to wait out


class CoolingUpstream(FaultUpstream):
    """FaultUpstream plus a mode `429_wait`: a 429 whose Retry-After is COOLDOWN_S."""

    async def _inject(self, mode: str, key: str, request: web.Request, st: object) -> web.StreamResponse:
        if mode == "429_wait":
            return _err(429, "Rate limit reached", "rate_limit_exceeded", {"Retry-After": str(COOLDOWN_S)})
        return await super()._inject(mode, key, request, st)  # type: ignore[arg-type]


@dataclass
class Stack:
    url: str
    openai: CoolingUpstream
    anthropic: AnthropicUpstream
    proc: subprocess.Popen[str]
    data_dir: Path


def config(openai_url: str, anthropic_url: str, vlm: Path, data_dir: Path) -> str:
    return f"""
server: {{admin_key: {ADMIN_KEY}}}
data_dir: {data_dir}
store: sqlite:///{data_dir}/smolgate.db
ledger:
  flush_interval: 0.2
  prices:
    gpt-fake: {{input: {PRICE_IN}, output: {PRICE_OUT}}}
console: {{log_bodies: true}}
retry: {{attempts: 1}}
offline_fallback: "off"  # the upstream's 429 reaches the client (the cooldown test); no small-model stand-in
providers:
  - name: openai-up
    protocol: openai
    base_url: {openai_url}/v1
    accounts: [{{name: main, api_key: {OPENAI_KEY}}}]
  - name: claude-up
    protocol: anthropic
    base_url: {anthropic_url}
    accounts: [{{name: claude-main, api_key: {ANTHROPIC_KEY}}}]
  - name: local
    protocol: local
    model: {vlm}
models:
  - name: gpt
    targets: [{{provider: openai-up, model: gpt-fake}}]
  - name: claude
    targets: [{{provider: claude-up, model: claude-fake}}]
  - name: vlm
    targets: [{{provider: local, model: default}}]
"""


@contextlib.contextmanager
def running_stack(tmp: Path) -> Iterator[Stack]:
    vlm, _ = make_checkpoint("smolvlm2-256m", tmp / "tiny-smolvlm2")
    openai = CoolingUpstream({OPENAI_KEY: "ok", EXTRA_KEY: "ok"})
    anthropic = AnthropicUpstream(api_key=ANTHROPIC_KEY)
    openai.start()
    anthropic.start()
    data_dir = tmp / "data"
    data_dir.mkdir()
    cfg = tmp / "smolgate.yaml"
    cfg.write_text(config(openai.url, anthropic.url, vlm, data_dir))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMOLGATE_")}
    proc, url = start_serve(cfg, env=env, timeout=120)
    try:
        yield Stack(url, openai, anthropic, proc, data_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        openai.stop()
        anthropic.stop()
