"""`/admin/usage`, `/admin/usage/series` and `/admin/usage/recent` on a real gateway over a real store (SQLite, PostgreSQL)
holding known rows: exact sums, derived figures, and a clear 400 naming each bad query parameter."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from smolgate.config import parse_config
from tests.gateway_server import GatewayServer
from tests.usage_rows import HOUR, ROWS, SINCE, filled_store

ADMIN_KEY = "sk-admin-usage-test"
__all__ = ["filled_store"]  # the store fixture, of each backend


@pytest.fixture(scope="module")
def admin(filled_store: str) -> Iterator[httpx.Client]:
    cfg = parse_config(f"store: '{filled_store}'\nserver: {{admin_key: {ADMIN_KEY}}}\n")
    with GatewayServer(cfg) as gw:
        headers = {"authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=gw.url, headers=headers, timeout=30) as client:
            yield client


def test_totals_by_key(admin: httpx.Client):
    r = admin.get("/admin/usage", params={"since": SINCE, "by": "key"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["by"] == "key" and body["since"] == SINCE
    groups = {g["group"]: g for g in body["groups"]}
    assert list(groups) == ["vk_alice", "vk_bob", None]  # costliest first
    alice = groups["vk_alice"]
    assert (alice["requests"], alice["errors"], alice["input_tokens"], alice["cached_tokens"]) == (
        2,
        0,
        3000,
        400,
    )
    assert (alice["output_tokens"], alice["reasoning_tokens"]) == (500, 50)
    assert alice["cost_usd"] == pytest.approx(0.03)
    assert (alice["avg_latency_ms"], alice["avg_ttft_ms"], alice["error_pct"]) == (200.0, 20.0, 0.0)
    assert groups["vk_bob"]["error_pct"] == 100.0
    assert groups[None]["avg_ttft_ms"] is None
    total = body["total"]
    assert (total["requests"], total["errors"], total["input_tokens"]) == (4, 1, 3510)
    assert total["cost_usd"] == pytest.approx(0.035) and total["error_pct"] == 25.0


def test_totals_without_a_group_and_by_account(admin: httpx.Client):
    body = admin.get("/admin/usage", params={"since": SINCE}).json()
    assert body["groups"] == [] and body["total"]["requests"] == 4
    body = admin.get("/admin/usage", params={"since": SINCE, "by": "account", "limit": 2}).json()
    assert [g["group"] for g in body["groups"]] == ["oai/team-b", "oai/team-a"]
    body = admin.get("/admin/usage", params={"since": "2020-01-01", "until": "2020-01-02"}).json()
    assert body["total"]["requests"] == 0


def test_series_per_hour_and_per_key(admin: httpx.Client):
    body = admin.get("/admin/usage/series", params={"since": SINCE, "step": "1h"}).json()
    assert body["step"] == 3600
    buckets = {b["bucket"]: b for b in body["buckets"]}
    assert (buckets[HOUR]["requests"], buckets[HOUR + 3600]["requests"]) == (2, 2)
    assert buckets[HOUR]["cost_usd"] == pytest.approx(0.03)
    body = admin.get("/admin/usage/series", params={"since": SINCE, "step": "60", "key": "vk_bob"}).json()
    assert [(b["bucket"], b["requests"], b["group"]) for b in body["buckets"]] == [
        (HOUR + 3600 + 60, 1, "vk_bob")
    ]


def test_recent_rows_newest_first(admin: httpx.Client):
    rows = admin.get("/admin/usage/recent", params={"limit": 3}).json()["rows"]
    assert [r["request_id"] for r in rows] == [ROWS[3].request_id, ROWS[2].request_id, ROWS[1].request_id]
    rows = admin.get("/admin/usage/recent", params={"key": "vk_alice"}).json()["rows"]
    assert [r["key_id"] for r in rows] == ["vk_alice", "vk_alice"]
    assert rows[1]["cached_tokens"] == 400 and rows[1]["stream"] is True


@pytest.mark.parametrize(
    ("path", "params", "param", "message"),
    [
        ("/admin/usage", {"since": "yesterday"}, "since", "is not a time"),
        ("/admin/usage", {"until": "soon"}, "until", "is not a time"),
        ("/admin/usage", {"since": "1h", "until": "2h"}, "until", "must be later than since"),
        ("/admin/usage", {"by": "colour"}, "by", "cannot group by 'colour'"),
        ("/admin/usage", {"limit": "0"}, "limit", "from 1 to 1000"),
        ("/admin/usage", {"limit": "ten"}, "limit", "from 1 to 1000"),
        ("/admin/usage", {"sinse": "1h"}, "sinse", "unknown query parameter 'sinse'"),
        ("/admin/usage/series", {"step": "90s"}, "step", "use 1m, or whole hours"),
        ("/admin/usage/series", {"since": "365d", "step": "1m"}, "step", "more than 10000 buckets"),
        ("/admin/usage/recent", {"limit": "5000"}, "limit", "from 1 to 1000"),
    ],
)
def test_bad_parameters_are_400s_naming_them(
    admin: httpx.Client, path: str, params: dict, param: str, message: str
):
    r = admin.get(path, params=params)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert message in err["message"] and err.get("param") == param


def test_usage_needs_the_admin_key(admin: httpx.Client):
    r = httpx.get(str(admin.base_url) + "/admin/usage", timeout=10)
    assert r.status_code == 401


def test_a_hostile_key_is_a_value_not_sql(admin: httpx.Client):
    for key in ("' OR '1'='1", "vk_alice' --", "vk_alice; DROP TABLE usage"):
        assert admin.get("/admin/usage/recent", params={"key": key}).json()["rows"] == []
        assert admin.get("/admin/usage/series", params={"since": SINCE, "key": key}).json()["buckets"] == []
    assert admin.get("/admin/usage", params={"since": SINCE}).json()["total"]["requests"] == 4
