"""Which policy a request gets (alias, key, request: the strictest wins) and what `local` refuses, in every
client protocol's own error shape; the ledger's record of what a policy did."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.gateway_server import GatewayServer
from tests.privacy.conftest import privacy_config

EMAIL = "jane.doe@example.com"
LOCAL = {"x-smolgate-privacy": "local"}


def _reset(fakes) -> None:
    for f in fakes.values():
        f.reset()


def _sent(fakes) -> str:
    seen = {id(f): f for f in fakes.values()}.values()
    return "\n".join(json.dumps(r.json, ensure_ascii=False) for f in seen for r in f.requests)


def _refused_openai(url: str, model: str) -> None:
    c = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, default_headers=LOCAL)
    with pytest.raises(openai.PermissionDeniedError, match="privacy policy is 'local'"):
        c.chat.completions.create(model=model, messages=[{"role": "user", "content": EMAIL}])


def _refused_responses(url: str, model: str) -> None:
    c = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, default_headers=LOCAL)
    with pytest.raises(openai.PermissionDeniedError, match="privacy policy is 'local'"):
        c.responses.create(model=model, input=EMAIL, stream=True)


def _refused_anthropic(url: str, model: str) -> None:
    c = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0, default_headers=LOCAL)
    with pytest.raises(anthropic.PermissionDeniedError, match="privacy policy is 'local'"):
        c.messages.create(model=model, max_tokens=20, messages=[{"role": "user", "content": EMAIL}])


def _refused_gemini(url: str, model: str) -> None:
    opts = genai_types.HttpOptions(base_url=url, headers=LOCAL)
    c = genai.Client(api_key="k", http_options=opts)
    with pytest.raises(genai_errors.ClientError) as err:
        c.models.generate_content(model=model, contents=EMAIL)
    assert err.value.code == 403 and "privacy policy is 'local'" in str(err.value)


def _refused_ollama(url: str, model: str) -> None:
    c = ollama.Client(host=url, headers=LOCAL)
    with pytest.raises(ollama.ResponseError) as err:
        list(c.chat(model=model, messages=[{"role": "user", "content": EMAIL}], stream=True))
    assert err.value.status_code == 403 and "privacy policy is 'local'" in str(err.value)


@pytest.mark.parametrize(
    "refused", [_refused_openai, _refused_responses, _refused_anthropic, _refused_gemini, _refused_ollama]
)
def test_local_without_a_local_target_is_a_403_in_each_protocol_and_sends_nothing(
    fakes, privacy_gateway, refused
):
    _reset(fakes)
    refused(privacy_gateway.url, "plain-openai")
    assert _sent(fakes) == ""


def _openai(url: str, key: str = "k", **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, default_headers=headers)


def test_a_request_asks_for_redaction_by_header_or_metadata(fakes, privacy_gateway):
    _reset(fakes)
    c = _openai(privacy_gateway.url, **{"x-smolgate-privacy": "redact"})
    r = c.chat.completions.create(model="plain-openai", messages=[{"role": "user", "content": EMAIL}])
    assert r.choices[0].message.content.startswith(f"You said: {EMAIL} |")
    plain = _openai(privacy_gateway.url)
    r = plain.chat.completions.create(
        model="plain-anthropic",
        messages=[{"role": "user", "content": EMAIL}],
        metadata={"smolgate_privacy": "redact"},
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in r if c.choices).startswith(f"You said: {EMAIL}")
    sent = _sent(fakes)
    assert EMAIL not in sent and sent.count("⟦EMAIL_1⟧") == 2
    assert "smolgate_privacy" not in sent  # the gateway's own setting is not forwarded


def test_a_request_cannot_loosen_its_alias_policy(fakes, privacy_gateway):
    _reset(fakes)
    c = _openai(privacy_gateway.url, **{"x-smolgate-privacy": "standard"})
    r = c.chat.completions.create(model="redact-openai", messages=[{"role": "user", "content": EMAIL}])
    assert r.choices[0].message.content.startswith(f"You said: {EMAIL} |")
    assert EMAIL not in _sent(fakes)


def test_an_unknown_policy_is_a_400(privacy_gateway):
    c = _openai(privacy_gateway.url, **{"x-smolgate-privacy": "secret"})
    with pytest.raises(openai.BadRequestError, match="x-smolgate-privacy must be one of"):
        c.chat.completions.create(model="plain-openai", messages=[{"role": "user", "content": "hi"}])


def test_without_a_policy_values_do_reach_the_upstream(fakes, privacy_gateway):
    """The control for every other test here: the fakes do see a value nothing redacts."""
    _reset(fakes)
    _openai(privacy_gateway.url).chat.completions.create(
        model="plain-openai", messages=[{"role": "user", "content": EMAIL}]
    )
    assert EMAIL in _sent(fakes)


def test_count_tokens_obeys_local(fakes, privacy_gateway):
    _reset(fakes)
    c = anthropic.Anthropic(base_url=privacy_gateway.url, api_key="k", max_retries=0, default_headers=LOCAL)
    with pytest.raises(anthropic.PermissionDeniedError):
        c.messages.count_tokens(model="plain-anthropic", messages=[{"role": "user", "content": EMAIL}])
    assert _sent(fakes) == ""


# ---------------------------------------------------------------------- keys and the ledger


@pytest.fixture(scope="module")
def keyed_gateway(fakes, tmp_path_factory):
    d = tmp_path_factory.mktemp("privacy-keys")
    extra = (
        f"data_dir: {d}\nledger: {{flush_interval: 0.05}}\n"
        "keys:\n  - {key: k-local-key-1234, name: private, privacy: local}\n"
        "  - {key: k-open-key-12345, name: open}\n"
    )
    with GatewayServer(privacy_config({k: f.url for k, f in fakes.items()}, extra)) as gw:
        yield gw, d / "smolgate.db"


def _ledger(db: Path, n: int) -> list[tuple[str, str | None]]:
    deadline = time.monotonic() + 30
    while True:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT alias, privacy FROM usage ORDER BY ts").fetchall()
        if len(rows) >= n:
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)


def test_a_keys_policy_binds_its_requests_and_the_ledger_records_counts_not_values(fakes, keyed_gateway):
    gw, db = keyed_gateway
    _reset(fakes)
    private = _openai(gw.url, "k-local-key-1234", **{"x-smolgate-privacy": "standard"})
    with pytest.raises(openai.PermissionDeniedError, match="privacy policy is 'local'"):
        private.chat.completions.create(model="plain-openai", messages=[{"role": "user", "content": EMAIL}])
    assert _sent(fakes) == ""
    # a virtual key created with a policy (admin API, loopback without an admin key)
    created = httpx.post(gw.url + "/admin/keys", json={"name": "redacted", "privacy": "redact"})
    assert created.status_code == 201 and created.json()["key"]["privacy"] == "redact"
    vkey = _openai(gw.url, created.json()["secret"])
    content = f"{EMAIL} and again {EMAIL}, or bob@example.org"
    r = vkey.chat.completions.create(model="plain-gemini", messages=[{"role": "user", "content": content}])
    assert r.choices[0].message.content.startswith(f"You said: {content} |")
    assert "example" not in _sent(fakes)
    bad = httpx.post(gw.url + "/admin/keys", json={"name": "bad", "privacy": "secret"})
    assert bad.status_code == 400
    rows = _ledger(db, 2)
    assert ("plain-openai", '{"policy":"local"}') in rows
    assert ("plain-gemini", '{"policy":"redact","email":2}') in rows
    assert "example" not in str(rows)


# ---------------------------------------------------------------------- local targets


@pytest.fixture(scope="module")
def local_gateway(fakes, tmp_path_factory):
    """A remote target first and the embedded engine (a tiny random SmolVLM2) behind it."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
    from checkpoints import make_checkpoint

    path, _ = make_checkpoint("smolvlm2-256m", tmp_path_factory.mktemp("vlm") / "tiny-smolvlm2")
    urls = {k: f.url for k, f in fakes.items()}
    cfg = privacy_config(urls).replace(
        "models:\n",
        f"  - name: engine\n    protocol: local\n    model: {path}\n"
        "models:\n"
        "  - name: private\n    privacy: local\n"
        "    targets: [{provider: up-openai, model: m}]\n    fallbacks: [on-device]\n"
        "  - name: on-device\n    targets: [{provider: engine, model: default}]\n",
        1,
    )
    with GatewayServer(cfg) as gw:
        yield gw


def test_local_skips_remote_targets_and_fallbacks_serve_it(fakes, local_gateway):
    _reset(fakes)
    c = _openai(local_gateway.url)
    r = c.chat.completions.create(
        model="private", messages=[{"role": "user", "content": EMAIL}], max_tokens=4
    )
    assert r.choices[0].finish_reason in ("length", "stop")
    with pytest.raises(openai.PermissionDeniedError):  # before the stream starts: a plain 403
        c.chat.completions.create(
            model="plain-openai",
            messages=[{"role": "user", "content": EMAIL}],
            max_tokens=4,
            stream=True,
            extra_headers=LOCAL,
        )
    assert _sent(fakes) == ""


def test_a_stored_conversation_is_redacted_again_with_the_same_placeholders(fakes, privacy_gateway):
    """Responses `previous_response_id`: the stored turn holds the real values (the client's), and the next turn
    sends the whole conversation redacted again, numbered as before (a stable prefix for the upstream)."""
    _reset(fakes)
    c = _openai(privacy_gateway.url)
    first = c.responses.create(model="redact-anthropic", input=f"I am {EMAIL}")
    assert first.output_text.startswith(f"You said: I am {EMAIL} |")
    second = c.responses.create(
        model="redact-anthropic", previous_response_id=first.id, input="write to bob@example.org too"
    )
    assert second.output_text.startswith("You said: write to bob@example.org too |")
    sent = [json.dumps(r.json, ensure_ascii=False) for r in fakes["anthropic"].requests]
    assert len(sent) == 2 and "example" not in "".join(sent)
    assert "I am ⟦EMAIL_1⟧" in sent[1] and "You said: I am ⟦EMAIL_1⟧" in sent[1]
    assert "write to ⟦EMAIL_2⟧ too" in sent[1]
