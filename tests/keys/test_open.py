"""When the gateway is open (no key needed): only while there are neither config keys nor virtual keys. Config
keys keep working beside virtual keys."""

from __future__ import annotations

import httpx

from smolgate.config import Config
from smolgate.vkeys import load_pepper, new_key
from tests.keys.conftest import Db, create, keyed_config, start_gateway
from tests.keys.util import CHAT, post, wait_for


def test_the_first_virtual_key_closes_an_open_gateway_and_revoking_it_does_not_reopen(urls, tmp_path):
    gw = start_gateway(keyed_config(urls, tmp_path))
    try:
        assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT).status_code == 200  # open
        key, secret = create(gw, name="first")
        assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT).status_code == 401  # closed at once
        assert post(gw.url, "openai", secret).status_code == 200
        httpx.post(gw.url + f"/admin/keys/{key['id']}/revoke")
        assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT).status_code == 401
    finally:
        gw.stop()


def test_a_key_created_by_another_process_closes_the_gateway_within_the_ttl(urls, tmp_path):
    gw = start_gateway(keyed_config(urls, tmp_path))
    try:
        assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT).status_code == 200
        row, secret = new_key(load_pepper(Config(data_dir=str(tmp_path))), "from-cli")
        Db(tmp_path).run(lambda s: s.add_key(row))  # as `smolgate keys create` in another process
        wait_for(lambda: httpx.post(gw.url + "/v1/chat/completions", json=CHAT).status_code == 401, "closed")
        assert post(gw.url, "openai", secret).status_code == 200
    finally:
        gw.stop()


def test_config_keys_keep_working_beside_virtual_keys(urls, tmp_path):
    cfg = keyed_config(
        urls, tmp_path, "keys:\n  - {key: sk-config-plain, name: plain}\n  - {key: sg-config-lookalike}\n"
    )
    gw = start_gateway(cfg)
    try:
        _, secret = create(gw, name="virtual")
        for key in ("sk-config-plain", "sg-config-lookalike", secret):
            assert post(gw.url, "openai", key).status_code == 200, key
        assert post(gw.url, "openai", "sk-config-wrong").status_code == 401
        assert post(gw.url, "openai", "sg-config-wrong").status_code == 401
        wait_for(lambda: len(gw.seen.records) >= 5, "five requests counted")
        ids = {r.key_id for r in gw.seen.records if r.status == 200}
        assert "config:plain" in ids and any(i and i.startswith("vk_") for i in ids)
    finally:
        gw.stop()


def test_an_unusable_pepper_fails_virtual_keys_only(urls, tmp_path, monkeypatch):
    monkeypatch.setenv("SMOLGATE_KEY_PEPPER", "short")  # too short: refused
    gw = start_gateway(keyed_config(urls, tmp_path, "keys:\n  - {key: sk-config-plain}\n"))
    try:
        assert post(gw.url, "openai", "sk-config-plain").status_code == 200  # the gateway started and serves
        r = post(gw.url, "openai", "sg-" + "a" * 43)
        assert r.status_code == 503 and "virtual keys are unavailable" in r.text
        assert httpx.post(gw.url + "/admin/keys", json={"name": "x"}).status_code == 503
    finally:
        gw.stop()
