"""Budgets without Redis: the store's ledger plus this replica's spend not yet written — exact for one replica
(nothing counted twice once the ledger writes it), and shared by replicas once their ledgers flushed."""

from __future__ import annotations

import pytest

from smolgate.server import vkeys_budget
from tests.keys.conftest import COST, Db, create, keyed_config, start_gateway
from tests.keys.util import finished, post, wait_for
from tests.store.conftest import postgres  # noqa: F401  # the session's private PostgreSQL


def spend(db: Db, key_id: str) -> float:
    return db.run(lambda s: s.key_spend(key_id, 0.0))


def test_spend_not_yet_in_the_ledger_counts(urls, tmp_path):
    gw = start_gateway(keyed_config(urls, tmp_path, "ledger: {flush_interval: 3600}\n"))  # never flushes here
    try:
        key, secret = create(gw, name="pending", budget_usd=2 * COST)
        for n in (1, 2):
            assert post(gw.url, "openai", secret).status_code == 200
            finished(gw, key["id"], n)
        r = post(gw.url, "openai", secret)
        assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
        assert spend(Db(tmp_path), key["id"]) == 0.0  # none of it had reached the store
    finally:
        gw.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return request.getfixturevalue("postgres").create_database()


def test_two_replicas_share_a_budget_through_the_store(urls, tmp_path, monkeypatch, store_url):
    monkeypatch.setattr(vkeys_budget, "STORE_CACHE", 0.0)  # each check reads the store (the bound is 1 s)
    cfg = keyed_config(urls, tmp_path, f"ledger: {{flush_interval: 0.05}}\nstore: '{store_url}'\n")
    a, b = start_gateway(cfg), start_gateway(cfg)
    db = Db(tmp_path, store_url)
    try:
        key, secret = create(a, name="shared-by-store", budget_usd=4 * COST, period="day")
        for i in range(4):  # alternating replicas; each request's cost reaches the ledger before the next
            assert post((a, b)[i % 2].url, "openai", secret).status_code == 200, i
            wait_for(lambda n=i: spend(db, key["id"]) == pytest.approx(COST * (n + 1)), "the ledger row")
        for gw in (a, b):
            r = post(gw.url, "openai", secret)
            assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota", r.text
    finally:
        a.stop()
        b.stop()
