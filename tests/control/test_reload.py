"""Config reload without a restart: `POST /admin/reload` on a real gateway in front of a real fake upstream,
with the OpenAI SDK as the client. A stream in flight finishes on the old providers; the new alias answers;
a broken file is refused and the old config keeps serving."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest

from smolgate.config import load_config
from tests.fakes.openai_upstream import OpenAIUpstream
from tests.gateway_server import GatewayServer


def config_text(up: OpenAIUpstream, data_dir: Path, aliases: list[str], first_byte: int = 10) -> str:
    models = "".join(f"  - name: {a}\n    targets: [{{provider: up, model: gpt-fake}}]\n" for a in aliases)
    return (
        f"data_dir: {data_dir}\n"
        f"providers:\n  - name: up\n    protocol: openai\n    base_url: {up.url}/v1\n"
        f"    accounts: [{{name: main, api_key: sk-up}}]\n    timeouts: {{first_byte: {first_byte}}}\n"
        f"models:\n{models}"
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    up = OpenAIUpstream(api_key="sk-up").start()
    d = tmp_path_factory.mktemp("reload")
    path = d / "smolgate.yaml"
    path.write_text(config_text(up, d, ["first"]))
    with GatewayServer(load_config(path)) as gw:
        gw.app.runtime.config_path = str(path)
        yield gw, up, path, d
    up.stop()


def ask(gw: GatewayServer, model: str, text: str = "hello") -> str:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    return r.choices[0].message.content or ""


def test_stream_in_flight_survives_a_reload_and_the_new_alias_answers(setup):
    gw, up, path, d = setup
    rt = gw.app.runtime
    old_provider, old_gen = rt.providers["up"], rt.gen
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="first", messages=[{"role": "user", "content": "SLOW count for me"}], stream=True
    )
    it = iter(stream)
    text = next(it).choices[0].delta.content or ""
    # The provider's settings change, so the reload builds a new provider and closes the old one later.
    path.write_text(config_text(up, d, ["first", "second"], first_byte=11))
    r = httpx.post(gw.url + "/admin/reload", timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["providers_changed"] == ["up"]
    assert rt.providers["up"] is not old_provider
    # the reload request itself was pinned to the old config until just after its answer was sent
    deadline = time.monotonic() + 10
    while old_gen.users > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert old_gen.users == 1 and old_gen.retired is not None  # the stream holds the old config open
    assert ask(gw, "second")  # the new alias answers while the old stream is still running
    rest = list(it)
    text += "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
    assert rest[-1].choices == [] or rest[-1].choices[0].finish_reason == "stop"
    assert text == ask(gw, "first", "SLOW count for me")  # the whole answer, as a fresh request gets it
    deadline = time.monotonic() + 10
    while old_gen.users and time.monotonic() < deadline:  # the server finishes the request after [DONE]
        time.sleep(0.01)
    assert old_gen.users == 0 and old_gen.retired is None  # its last request left: its providers closed


def test_broken_file_is_refused_and_the_old_config_keeps_serving(setup):
    gw, up, path, d = setup
    path.write_text(config_text(up, d, ["first", "second"]))
    assert httpx.post(gw.url + "/admin/reload", timeout=30).status_code == 200
    path.write_text(config_text(up, d, ["first", "third"]).replace("provider: up,", "provider: nope,", 1))
    r = httpx.post(gw.url + "/admin/reload", timeout=30)
    assert r.status_code == 400
    msg = r.json()["error"]["message"]
    assert "config reload refused" in msg and "no provider named 'nope'" in msg
    assert "sk-up" not in r.text
    assert ask(gw, "second")  # the old config is still the one serving
    with pytest.raises(openai.NotFoundError):
        ask(gw, "third")


def test_unchanged_provider_keeps_its_objects(setup):
    gw, up, path, d = setup
    rt = gw.app.runtime
    path.write_text(config_text(up, d, ["first"]))
    httpx.post(gw.url + "/admin/reload", timeout=30).raise_for_status()
    provider, pool = rt.providers["up"], rt.pools.get("up")
    path.write_text(config_text(up, d, ["first", "fourth"]))
    r = httpx.post(gw.url + "/admin/reload", timeout=30)
    assert r.json()["providers_changed"] == []
    assert rt.providers["up"] is provider and rt.pools.get("up") is pool  # health and in-flight kept
    assert ask(gw, "fourth")


def test_reloads_are_audited_applied_or_refused(setup):
    gw, _, path, _ = setup
    entries = httpx.get(gw.url + "/admin/audit", params={"limit": 100}).json()["entries"]
    reloads = [e for e in entries if e["action"] == "config.reload"]
    assert {e["detail"]["ok"] for e in reloads} == {True, False}
    refused = next(e for e in reloads if not e["detail"]["ok"])
    assert "no provider named 'nope'" in refused["detail"]["error"] and refused["target"] == str(path)
    assert all(e["actor"] == "admin-api" and e["source"] == "127.0.0.1" for e in reloads)
