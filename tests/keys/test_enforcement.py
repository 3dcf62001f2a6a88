"""Virtual keys enforced in all five client protocols, through their official SDKs: 401 unknown / revoked /
expired, 403 for a model outside the key's list, 429 with Retry-After over rpm / tpm / concurrency, and each
protocol's own billing/quota error once the budget is spent."""

from __future__ import annotations

import time

import httpx
import msgspec
import pytest

from smolgate.config import Config
from smolgate.vkeys import load_pepper, new_key
from tests.keys.conftest import create
from tests.keys.sdks import PROTOCOLS, ask, refused
from tests.keys.util import RAW, finished, headers, post, wait_for


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_a_virtual_key_works_from_every_sdk_and_the_record_names_its_id(gw, proto):
    key, secret = create(gw, name=f"ok-{proto}")
    assert "You said: hi" in ask(proto, gw.url, secret)
    finished(gw, key["id"], 1)


AUTH_KIND = {
    "openai": "auth",
    "responses": "auth",
    "anthropic": "authentication_error",
    "gemini": "UNAUTHENTICATED",
}


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_unknown_revoked_and_expired_keys_are_401_in_each_protocols_shape(gw, db, data_dir, proto):
    revoked, revoked_secret = create(gw, name=f"revoked-{proto}")
    assert httpx.post(gw.url + f"/admin/keys/{revoked['id']}/revoke").status_code == 200
    row, expired_secret = new_key(load_pepper(Config(data_dir=str(data_dir))), f"expired-{proto}")
    db.run(lambda s: s.add_key(msgspec.structs.replace(row, expires=time.time() - 1)))
    for secret, words in (
        ("sg-" + "x" * 43, "invalid API key"),
        (revoked_secret, "revoked"),
        (expired_secret, "expired"),
    ):
        got = refused(proto, gw.url, secret)
        assert got.status == 401, (secret, got)
        assert words in got.message, got
        if proto in AUTH_KIND:
            assert got.kind == AUTH_KIND[proto]
    path, body, _ = RAW[proto]  # no key at all (SDKs refuse to send none): virtual keys closed the gateway
    r = httpx.post(gw.url + path, json=body)
    assert r.status_code == 401 and "missing API key" in r.text


PERMISSION_KIND = {
    "openai": "permission",
    "responses": "permission",
    "anthropic": "permission_error",
    "gemini": "PERMISSION_DENIED",
}


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_a_model_outside_the_keys_list_is_403_and_is_not_listed(gw, proto):
    _, secret = create(gw, name=f"narrow-{proto}", models=["via-anthropic"])
    assert "You said" in ask(proto, gw.url, secret, model="via-anthropic")
    got = refused(proto, gw.url, secret, model="via-openai")
    assert got.status == 403 and "via-openai" in got.message, got
    if proto in PERMISSION_KIND:
        assert got.kind == PERMISSION_KIND[proto]
    listed = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {secret}"}).json()
    assert [m["id"] for m in listed["data"]] == ["via-anthropic"]


def test_count_tokens_checks_the_model_too(gw):
    _, secret = create(gw, name="narrow-count", models=["via-anthropic"])
    body = {"model": "via-openai", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(gw.url + "/v1/messages/count_tokens", json=body, headers={"x-api-key": secret})
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"


def test_a_refused_model_name_never_forges_a_log_line(gw, caplog):
    """The 403 quotes the model only when it is short and printable; the refusal's log line is one line whatever
    the client sent (in the path or the model name)."""
    _, secret = create(gw, name="narrow-forge", models=["via-anthropic"])
    forged = "via-openai\nERROR smolgate: forged line"
    body = {"model": forged, "messages": [{"role": "user", "content": "hi"}]}
    with caplog.at_level("INFO", logger="smolgate.server"):
        r = httpx.post(
            gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"}
        )
        assert r.status_code == 403 and "forged" not in r.text
        r = httpx.post(gw.url + "/v1/chat/completions%0AERROR%20smolgate:%20forged%20path", json=body)
        assert r.status_code == 404
    assert caplog.records and not any(line.startswith("ERROR smolgate") for line in caplog.text.splitlines())
    assert all("\n" not in rec.getMessage() for rec in caplog.records if rec.name == "smolgate.server")


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_over_rpm_is_429_with_retry_after(gw, proto):
    _, secret = create(gw, name=f"rpm-{proto}", rpm=2)
    assert [post(gw.url, proto, secret).status_code for _ in range(2)] == [200, 200]
    r = post(gw.url, proto, secret)
    assert r.status_code == 429 and float(r.headers["retry-after"]) >= 1, r.text
    assert "rate limit (2 requests per minute)" in r.text


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_over_tpm_is_429_with_retry_after(gw, proto):
    key, secret = create(gw, name=f"tpm-{proto}", tpm=5)
    assert post(gw.url, proto, secret).status_code == 200  # ~10 tokens: admitted under the limit
    finished(gw, key["id"], 1)
    r = post(gw.url, proto, secret)
    assert r.status_code == 429 and float(r.headers["retry-after"]) >= 1, r.text
    assert "5 tokens per minute" in r.text


def test_over_concurrency_is_429_with_retry_after(gw):
    _, secret = create(gw, name="one-at-a-time", max_concurrency=1)
    path, body, style = RAW["openai"]
    # the Anthropic fake sends a "SLOW" answer a word every 0.25 s
    slow = {
        **body,
        "model": "via-anthropic",
        "stream": True,
        "messages": [{"role": "user", "content": "SLOW"}],
    }
    with httpx.stream("POST", gw.url + path, json=slow, headers=headers(style, secret), timeout=30) as r:
        assert r.status_code == 200
        lines = r.iter_lines()  # (kept: a dropped generator would close the stream)
        next(lines)  # the first chunk is out: the request holds its slot
        second = post(gw.url, "openai", secret)
        assert second.status_code == 429 and float(second.headers["retry-after"]) >= 1
        assert "concurrency limit (1 requests at once)" in second.text


QUOTA = {  # protocol → (status, what its SDK reads as the kind)
    "openai": (429, "insufficient_quota"),
    "responses": (429, "insufficient_quota"),
    "anthropic": (402, "billing_error"),
    "gemini": (429, "RESOURCE_EXHAUSTED"),
    "ollama": (429, None),
}


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_a_spent_budget_is_the_protocols_quota_error(gw, proto):
    key, secret = create(gw, name=f"budget-{proto}", budget_usd=0.5, period="day")  # two requests' worth
    for n in (1, 2):
        assert "You said" in ask(proto, gw.url, secret)
        finished(gw, key["id"], n)
    got = refused(proto, gw.url, secret)
    status, kind = QUOTA[proto]
    assert got.status == status, got
    if kind is not None:
        assert got.kind == kind
    assert "daily budget ($0.50)" in got.message
    # the raw answer: not retryable, and says when the day (UTC) ends
    r = post(gw.url, proto, secret)
    assert r.status_code == status
    if proto in ("openai", "responses", "anthropic"):
        assert r.headers["x-should-retry"] == "false"
    assert 0 < float(r.headers["retry-after"]) <= 86400
    shown = httpx.get(gw.url + f"/admin/keys/{key['id']}").json()["key"]
    assert shown["status"] == "active"


def test_rotate_gives_a_new_secret_and_the_old_one_stops_at_once(gw):
    key, old = create(gw, name="rotated")
    assert post(gw.url, "openai", old).status_code == 200
    r = httpx.post(gw.url + f"/admin/keys/{key['id']}/rotate")
    assert r.status_code == 200
    new = r.json()["secret"]
    assert new != old and r.json()["key"]["id"] == key["id"] and r.json()["key"]["prefix"] == new[:12]
    assert post(gw.url, "openai", old).status_code == 401
    assert post(gw.url, "openai", new).status_code == 200


def test_a_revoke_in_another_process_takes_effect_within_the_cache_ttl(gw, db):
    key, secret = create(gw, name="revoked-elsewhere")
    assert post(gw.url, "openai", secret).status_code == 200
    row = db.run(lambda s: s.key(key["id"]))
    db.run(lambda s: s.update_key(msgspec.structs.replace(row, revoked=time.time())))  # as the CLI would
    wait_for(lambda: post(gw.url, "openai", secret).status_code == 401, "the revoke is seen")


def test_stored_responses_stay_the_keys_across_a_rotation(gw):
    import openai

    key, old = create(gw, name="responses-owner")
    first = openai.OpenAI(base_url=gw.url + "/v1", api_key=old, max_retries=0).responses.create(
        model="via-openai", input="remember me"
    )
    new = httpx.post(gw.url + f"/admin/keys/{key['id']}/rotate").json()["secret"]
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=new, max_retries=0)
    assert client.responses.retrieve(first.id).id == first.id  # the key's, not the old secret's
    follow = client.responses.create(model="via-openai", input="and now?", previous_response_id=first.id)
    assert "turns=" in follow.output_text
    _, other = create(gw, name="responses-stranger")
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=gw.url + "/v1", api_key=other, max_retries=0).responses.retrieve(first.id)


def test_a_model_outside_the_keys_list_is_not_found_by_lookup_either(gw):
    # the listing hides it, so a lookup must not confirm it exists (OpenAI's and Ollama's lookups)
    _, secret = create(gw, name="narrow-lookup", models=["via-anthropic"])
    auth = {"authorization": f"Bearer {secret}"}
    assert httpx.get(gw.url + "/v1/models/via-anthropic", headers=auth).status_code == 200
    hidden = httpx.get(gw.url + "/v1/models/via-openai", headers=auth)
    unknown = httpx.get(gw.url + "/v1/models/no-such-model", headers=auth)
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"]["message"].replace("via-openai", "X") == unknown.json()["error"][
        "message"
    ].replace("no-such-model", "X")
    shown = httpx.post(gw.url + "/api/show", json={"model": "via-openai"}, headers=auth)
    assert shown.status_code == 404


def test_a_request_in_flight_across_a_rotation_still_counts_toward_the_budget(gw):
    key, old = create(gw, name="rotated-mid-stream", budget_usd=0.5, period="day")  # two requests' worth
    path, body, style = RAW["openai"]
    slow = {
        **body,
        "model": "via-anthropic",
        "stream": True,
        "messages": [{"role": "user", "content": "SLOW"}],
    }
    with httpx.stream("POST", gw.url + path, json=slow, headers=headers(style, old), timeout=30) as r:
        lines = r.iter_lines()
        next(lines)  # in flight
        new = httpx.post(gw.url + f"/admin/keys/{key['id']}/rotate").json()["secret"]
        for _ in lines:  # the stream ends after the rotation
            pass
    finished(gw, key["id"], 1)
    assert post(gw.url, "openai", new).status_code == 200
    finished(gw, key["id"], 2)
    assert post(gw.url, "openai", new).status_code == 429  # the streamed request's cost was counted
