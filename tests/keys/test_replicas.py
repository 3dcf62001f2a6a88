"""Two gateway replicas sharing one Redis (`state:`) and one store enforce one budget and one rate limit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from tests.keys.conftest import COST, create, keyed_config, start_gateway
from tests.keys.util import finished, post, wait_for
from tests.pool.conftest import RedisServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    if shutil.which("redis-server") is None:
        subprocess.run(["sh", str(ROOT / "scripts" / "ensure_redis.sh")], check=True)
    srv = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield srv.url
    srv.stop()


@pytest.fixture(scope="module")
def replicas(urls, tmp_path_factory, redis_url):
    cfg = keyed_config(urls, tmp_path_factory.mktemp("replicas"), f"state: {redis_url}\n")
    a, b = start_gateway(cfg), start_gateway(cfg)  # one data dir: one SQLite store
    yield a, b
    a.stop()
    b.stop()


def test_two_replicas_enforce_one_budget(replicas, redis_url):
    a, b = replicas
    key, secret = create(a, name="shared-budget", budget_usd=4 * COST, period="month")
    spend = redis.Redis.from_url(redis_url, decode_responses=True)

    def spent() -> float:
        names = spend.keys(f"smolgate:spend:{key['id']}:m*")
        return float(spend.get(names[0]) or 0) if names else 0.0

    for i in range(4):  # alternating replicas, four requests' worth of budget
        gw = (a, b)[i % 2]
        assert post(gw.url, "openai", secret).status_code == 200
        finished(gw, key["id"], i // 2 + 1)
        wait_for(lambda n=i: abs(spent() - COST * (n + 1)) < 1e-9, f"spend {COST * (i + 1)} in Redis")
    for gw in (a, b):
        r = post(gw.url, "openai", secret)
        assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota", r.text


def test_two_replicas_enforce_one_rpm(replicas):
    a, b = replicas
    _, secret = create(a, name="shared-rpm", rpm=3)
    assert [post(gw.url, "openai", secret).status_code for gw in (a, b, a)] == [200, 200, 200]
    r = post(b.url, "openai", secret)
    assert r.status_code == 429 and float(r.headers["retry-after"]) >= 1


def test_with_redis_gone_budgets_fall_back_to_the_store(urls, tmp_path):
    (tmp_path / "redis").mkdir()
    srv = RedisServer(tmp_path / "redis").start()
    gw = start_gateway(keyed_config(urls, tmp_path, f"state: {srv.url}\n"))
    try:
        key, secret = create(gw, name="redis-gone", budget_usd=2 * COST)
        assert post(gw.url, "openai", secret).status_code == 200  # counted in Redis
        finished(gw, key["id"], 1)
        srv.stop()
        assert post(gw.url, "openai", secret).status_code == 200  # Redis is gone: the store and this replica
        finished(gw, key["id"], 2)
        r = post(gw.url, "openai", secret)
        assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota", r.text
    finally:
        gw.stop()
        srv.stop()
