"""`compile:` on a local route: true compiles the decode step at start, false keeps it eager, and the default
compiles it in the background; compiled, the route answers as eager."""

from __future__ import annotations

import httpx
from checkpoints import make_checkpoint
from numerics import assert_answer_is_decisive

from smolgate.engine.engine import ChatMessage, GenerationParams, TextPart
from tests.gateway_server import GatewayServer


def test_compiled_local_route_answers_like_the_eager_one(tmp_path):
    path, _ = make_checkpoint("smollm2-text", tmp_path / "tiny-smollm2")
    cfg = (
        f"providers:\n  - name: eager\n    protocol: local\n    model: {path}\n    dtype: float32\n"
        "    compile: false\n"
        f"  - name: fast\n    protocol: local\n    model: {path}\n    dtype: float32\n    compile: true\n"
        f"  - name: usual\n    protocol: local\n    model: {path}\n    dtype: float32\n"
        "models:\n  - name: a\n    targets: [{provider: eager, model: default}]\n"
        "  - name: b\n    targets: [{provider: fast, model: default}]\n"
    )
    with GatewayServer(cfg) as gw:
        engines = {name: p.engine for name, p in gw.app.dispatcher.providers.items()}
        assert engines["fast"].scheduler.compiled_step and not engines["eager"].scheduler.compiled_step
        assert engines["usual"].scheduler.limits.compile == "background"  # the default
        assert engines["usual"].scheduler.warming is not None
        answers = []
        for model in ("a", "b"):
            r = httpx.post(
                gw.url + "/v1/chat/completions",
                timeout=120,
                json={
                    "model": model,
                    "max_tokens": 12,
                    "messages": [{"role": "user", "content": "Count to five."}],
                },
            )
            assert r.status_code == 200
            answers.append(
                (r.json()["choices"][0]["message"]["content"], r.json()["usage"]["completion_tokens"])
            )
        assert answers[0] == answers[1]
        # inductor's fused norms round differently from eager: the same answer needs no near-tie in it
        question = [ChatMessage("user", [TextPart("Count to five.")])]
        alone = engines["eager"].generate(question, GenerationParams(max_tokens=12))
        assert alone.text == answers[0][0]  # the same prompt as the route's
        assert_answer_is_decisive(engines["eager"], question, alone.token_ids)
