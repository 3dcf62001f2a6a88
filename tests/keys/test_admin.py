"""The admin API for virtual keys: validated input with clear 400s, answers without hashes or secrets (but the
one-time secret), an audit row per change; and the secret never in the store, the logs or an error."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.keys.conftest import create
from tests.keys.util import post, wait_for


@pytest.mark.parametrize(
    "body,words",
    [
        ({}, "name is required"),
        ({"name": ""}, "name must be"),
        ({"name": "x' OR 1=1;--"}, "name must be"),
        ({"name": "vk_spoof"}, "must not start with 'vk_'"),
        ({"name": "a", "rpm": 0}, "rpm must be a positive integer"),
        ({"name": "a", "tpm": "many"}, "tpm must be a positive integer"),
        ({"name": "a", "max_concurrency": 1.5}, "max_concurrency must be a positive integer"),
        ({"name": "a", "budget_usd": -1}, "budget_usd must be a number >= 0"),
        ({"name": "a", "budget_usd": 5, "period": "week"}, "period must be one of day, month, total"),
        ({"name": "a", "period": "day"}, "period needs budget_usd"),
        ({"name": "a", "models": []}, "models must be a non-empty list"),
        ({"name": "a", "models": [1]}, "models must be a list of model names"),
        ({"name": "a", "expires": "soon"}, "not a duration"),
        ({"name": "a", "expires": 1}, "expires must be in the future"),
        ({"name": "a", "colour": "red"}, "unknown field 'colour'"),
    ],
)
def test_invalid_key_fields_are_clear_400s(gw, body, words):
    r = httpx.post(gw.url + "/admin/keys", json=body)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]["message"]


def test_bodies_that_are_not_json_objects_are_400s(gw):
    for raw in (b"not json", b"[1,2]"):
        r = httpx.post(gw.url + "/admin/keys", content=raw)
        assert r.status_code == 400


def test_names_are_unique_among_active_keys_and_unknown_keys_are_404(gw):
    key, _ = create(gw, name="unique-name")
    r = httpx.post(gw.url + "/admin/keys", json={"name": "unique-name"})
    assert r.status_code == 400 and "exists already" in r.text
    assert httpx.get(gw.url + "/admin/keys/unique-name").json()["key"]["id"] == key["id"]  # by name too
    for path in ("/admin/keys/vk_nope", "/admin/keys/nobody/revoke", "/admin/keys/vk_nope/rotate"):
        method = "GET" if path.count("/") == 3 else "POST"
        assert httpx.request(method, gw.url + path).status_code == 404
    r = httpx.get(gw.url + "/admin/keys/%0a%1b[31mfake-line")  # control characters are never echoed (logs)
    assert r.status_code == 404 and "fake-line" not in r.text
    assert httpx.post(gw.url + f"/admin/keys/{key['id']}/revoke").json()["key"]["status"] == "revoked"
    assert create(gw, name="unique-name")[0]["id"] != key["id"]  # the name is free again
    r = httpx.post(gw.url + f"/admin/keys/{key['id']}/rotate")
    assert r.status_code == 400 and "revoked" in r.text


def test_create_answers_limits_and_the_secret_once(gw):
    key, secret = create(
        gw,
        name="full",
        models=["via-openai", "via-gemini"],
        rpm=10,
        tpm=1000,
        max_concurrency=2,
        budget_usd=5,
        period="month",
        expires="30d",
    )
    assert secret.startswith("sg-") and len(secret) >= 3 + 43 and key["prefix"] == secret[:12]
    assert key["models"] == ["via-openai", "via-gemini"] and key["rpm"] == 10 and key["tpm"] == 1000
    assert key["max_concurrency"] == 2 and key["budget_usd"] == 5.0 and key["period"] == "month"
    assert 29 * 86400 < key["expires"] - key["created"] <= 30 * 86400
    listed = httpx.get(gw.url + "/admin/keys").json()["keys"]
    assert any(k["id"] == key["id"] and k["spend_usd"] == 0.0 for k in listed)


def test_the_secret_is_never_stored_logged_or_shown_again_and_changes_are_audited(gw, db, caplog):
    caplog.set_level(logging.DEBUG)
    key, secret = create(gw, name="canary")
    assert post(gw.url, "openai", secret).status_code == 200
    assert post(gw.url, "anthropic", secret[:-1] + "x").status_code == 401  # a near miss: logged, refused
    row = db.run(lambda s: s.key(key["id"]))
    shown = [
        httpx.get(gw.url + "/admin/keys?include_revoked=true").text,
        httpx.get(gw.url + f"/admin/keys/{key['id']}").text,
        httpx.post(gw.url + f"/admin/keys/{key['id']}/revoke").text,
    ]
    for text in shown:
        assert secret not in text and secret[12:30] not in text and row.hash not in text
    wait_for(lambda: db.run(lambda s: s.recent_usage(key_id=key["id"])), "the request's ledger row")
    stored = db.raw_bytes()
    assert row.hash.encode() in stored and key["id"].encode() in stored  # its hash, its id in the ledger…
    assert secret[3:].encode() not in stored and secret[12:30].encode() not in stored  # …never the secret
    assert secret not in caplog.text and secret[12:30] not in caplog.text
    log = db.run(lambda s: s.audit_log(limit=1000))
    audits = sorted(
        ((a.action, a.actor, a.source, a.target) for a in log if a.target == key["id"]), key=lambda a: a[0]
    )
    assert audits == [
        ("key.create", "admin-api", "127.0.0.1", key["id"]),
        ("key.revoke", "admin-api", "127.0.0.1", key["id"]),
    ]
    assert all(secret[12:30] not in repr(a) and row.hash not in repr(a) for a in log)
