"""LoRA adapters behind the gateway: configured `adapters:` are listed by /v1/models and picked by clients as
`local/<model>+<adapter>` or through an alias target's `adapter:`; a name that is not loaded is a 404; the admin
API loads and unloads adapters while serving, each change audited."""

from __future__ import annotations

from typing import Any

import httpx
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
    make_adapter(ref, tmp / "chatty", 4, target_modules=TEXT, r=2, lora_alpha=16)
    cfg = (
        f"data_dir: {tmp / 'data'}\nserver: {{admin_key: {ADMIN_KEY}}}\n"
        f"providers:\n  - name: local\n    protocol: local\n    model: {path}\n    dtype: float32\n"
        f"    adapters: {{terse: {adapter}}}\n"
        "models:\n  - name: base\n    targets: [{provider: local, model: default}]\n"
        "  - name: tuned\n    targets: [{provider: local, model: default, adapter: terse}]\n"
    )
    with GatewayServer(cfg) as gw:
        gw.tmp = tmp
        yield gw


ADMIN_KEY = "lora-admin-key-123456"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


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


def test_admin_api_loads_and_unloads_adapters_audited(gateway: Any) -> None:
    with httpx.Client(base_url=gateway.url, headers=ADMIN, timeout=60) as admin:
        r = admin.post("/admin/adapters", json={"name": "chatty", "path": str(gateway.tmp / "chatty")})
        assert r.status_code == 201 and r.json()["model"] == "local/tiny-smollm2+chatty"
        chatty = answer(gateway, "local/tiny-smollm2+chatty")
        assert chatty != answer(gateway, "base") and chatty == answer(gateway, "tiny-smollm2+chatty")
        listed = {a["name"] for a in admin.get("/admin/adapters").json()["adapters"]}
        assert listed == {"terse", "chatty"}
        for bad in (
            {"name": "a/b", "path": str(gateway.tmp / "chatty")},
            {"name": "x", "path": "relative/dir"},
            {"name": "x", "path": str(gateway.tmp)},
        ):
            assert admin.post("/admin/adapters", json=bad).status_code == 400
        assert admin.delete("/admin/adapters/chatty").status_code == 200
        assert admin.delete("/admin/adapters/chatty").status_code == 404
        with pytest.raises(openai.NotFoundError):
            answer(gateway, "local/tiny-smollm2+chatty")
        assert (
            httpx.post(gateway.url + "/admin/adapters", json={"name": "n", "path": "/x"}).status_code == 401
        )
        entries = admin.get("/admin/audit", params={"limit": 50}).json()["entries"]
        actions = [(e["action"], e["target"]) for e in entries if e["action"].startswith("adapter.")]
        assert actions == [("adapter.unload", "local/chatty"), ("adapter.load", "local/chatty")]
