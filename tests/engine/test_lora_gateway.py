"""LoRA adapters behind the gateway: configured `adapters:` are listed by /v1/models and picked by clients as
`local/<model>+<adapter>` or through an alias target's `adapter:`; a name that is not loaded is a 404."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from checkpoints import make_checkpoint
from test_lora_parity import TEXT, make_adapter

from tests.gateway_server import GatewayServer


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("lora-gw")
    path, ref = make_checkpoint("smollm2-text", tmp / "tiny-smollm2")
    adapter = make_adapter(ref, tmp / "terse", 3, target_modules=TEXT, r=4, lora_alpha=16)
    cfg = (
        f"providers:\n  - name: local\n    protocol: local\n    model: {path}\n    dtype: float32\n"
        f"    adapters: {{terse: {adapter}}}\n"
        "models:\n  - name: base\n    targets: [{provider: local, model: default}]\n"
        "  - name: tuned\n    targets: [{provider: local, model: default, adapter: terse}]\n"
    )
    with GatewayServer(cfg) as gw:
        yield gw


def answer(gw: Any, model: str) -> str:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    r = client.chat.completions.create(
        model=model, max_tokens=8, temperature=0, messages=[{"role": "user", "content": "Say something."}]
    )
    return r.choices[0].message.content or ""


def test_clients_pick_an_adapter_by_model_name_or_alias(gateway: Any) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    ids = {m.id for m in client.models.list().data}
    assert "local/tiny-smollm2" in ids and "local/tiny-smollm2+terse" in ids
    tuned = answer(gateway, "tuned")
    assert tuned == answer(gateway, "local/tiny-smollm2+terse") == answer(gateway, "tiny-smollm2+terse")
    assert tuned != answer(gateway, "base")
    assert answer(gateway, "base") == answer(gateway, "local/tiny-smollm2")
    with pytest.raises(openai.NotFoundError):
        answer(gateway, "local/tiny-smollm2+missing")
