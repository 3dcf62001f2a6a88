"""`/admin/usage`, `/admin/usage/series` and `/admin/usage/recent` on a real gateway over a real store (SQLite, PostgreSQL)
holding known rows: exact sums, derived figures, and a clear 400 naming each bad query parameter."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import httpx
import pytest

from smolgate.config import parse_config
from smolgate.server.admin.usage_csv import usage_csv
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


def test_percentiles_per_hour_and_over_the_window(admin: httpx.Client):
    """Worked out by hand from the doubling buckets (store/histogram.py): rank q·n, interpolated in its bucket."""
    body = admin.get("/admin/usage/series", params={"since": SINCE, "step": "1h"}).json()
    first, second = body["buckets"]
    # hour 1: latencies 100 [64,128) and 300 [256,512); one TTFT, 20 in [16,32)
    assert (first["latency_p50_ms"], first["latency_p99_ms"]) == (128.0, pytest.approx(256 + 256 * 0.98))
    assert (first["ttft_p50_ms"], first["ttft_p99_ms"]) == (24.0, pytest.approx(16 + 16 * 0.99))
    # hour 2: latencies 200 [128,256) and 1000 [512,1024); one TTFT, 50 in [32,64)
    assert (second["latency_p50_ms"], second["latency_p99_ms"]) == (256.0, pytest.approx(512 + 512 * 0.98))
    assert (second["ttft_p50_ms"], second["ttft_p99_ms"]) == (48.0, pytest.approx(32 + 32 * 0.99))
    total = admin.get("/admin/usage", params={"since": SINCE}).json()["total"]
    assert (total["latency_p50_ms"], total["latency_p99_ms"]) == (256.0, pytest.approx(512 + 512 * 0.96))
    assert (total["ttft_p50_ms"], total["ttft_p99_ms"]) == (32.0, pytest.approx(32 + 32 * 0.98))
    assert "latency_hist" not in total  # the raw counts stay in the store
    by_key = {"since": SINCE, "by": "key"}
    local = admin.get("/admin/usage", params={**by_key, "percentiles": "all"}).json()["groups"][2]
    assert local["group"] is None and local["ttft_p50_ms"] is None and local["latency_p50_ms"] == 768.0
    plain = admin.get("/admin/usage", params=by_key).json()  # groups' percentiles only when asked
    assert plain["groups"][2]["latency_p50_ms"] is None and plain["total"]["latency_p50_ms"] == 256.0
    assert admin.get("/admin/usage", params={**by_key, "percentiles": "some"}).status_code == 400
    empty = admin.get("/admin/usage", params={"since": "2020-01-01", "until": "2020-01-02"}).json()["total"]
    assert empty["latency_p50_ms"] is None and empty["ttft_p99_ms"] is None


def ids(admin: httpx.Client, **params: object) -> list[str]:
    r = admin.get("/admin/usage/recent", params=params)
    assert r.status_code == 200, r.text
    return [row["request_id"] for row in r.json()["rows"]]


def test_recent_filters(admin: httpx.Client):
    rid = [r.request_id for r in ROWS]
    assert ids(admin, alias="fast") == [rid[1], rid[0]]
    assert ids(admin, account="team-a") == [rid[0]] and ids(admin, account="oai/team-b") == [rid[1]]
    assert ids(admin, account="ant/team-a") == []  # that name, but another provider's
    assert ids(admin, status="error") == [rid[2]] and ids(admin, status="502") == [rid[2]]
    assert ids(admin, status="ok") == [rid[3], rid[1], rid[0]] and ids(admin, status="404") == []
    assert ids(admin, since=HOUR + 3600) == [rid[3], rid[2]]
    assert ids(admin, since=SINCE, until=HOUR + 3600) == [rid[1], rid[0]]
    assert ids(admin, key="vk_alice", account="team-b", status="ok", alias="fast", limit=5) == [rid[1]]
    assert ids(admin, alias="fast", limit=1) == [rid[1]]


def test_recent_as_csv(admin: httpx.Client):
    r = admin.get("/admin/usage/recent", params={"format": "csv", "key": "vk_alice"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    header, *lines = list(csv.reader(io.StringIO(r.text)))
    assert header == list(ROWS[0].__struct_fields__)  # every ledger column
    got = [dict(zip(header, line, strict=True)) for line in lines]
    assert [g["request_id"] for g in got] == [ROWS[1].request_id, ROWS[0].request_id]
    assert got[1]["cached_tokens"] == "400" and got[1]["stream"] == "1" and got[0]["ttft_ms"] == ""
    assert got[1]["cost_usd"] == "0.01" and got[1]["account"] == "team-a"


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
        ("/admin/usage/recent", {"limit": "100001", "format": "csv"}, "limit", "from 1 to 100000"),
        ("/admin/usage/recent", {"status": "fine"}, "status", "want ok (below 400), error"),
        ("/admin/usage/recent", {"status": "42"}, "status", "one HTTP status code"),
        ("/admin/usage/recent", {"format": "xml"}, "format", "want json or csv"),
        ("/admin/usage/recent", {"since": "soon"}, "since", "is not a time"),
        ("/admin/usage/recent", {"alias": "x" * 300}, "alias", "at most 256 characters"),
        ("/admin/usage/recent", {"sort": "ts"}, "sort", "unknown query parameter 'sort'"),
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
        for name in ("alias", "account"):
            assert admin.get("/admin/usage/recent", params={name: key}).json()["rows"] == []
        assert admin.get("/admin/usage/series", params={"since": SINCE, "key": key}).json()["buckets"] == []
    assert admin.get("/admin/usage", params={"since": SINCE}).json()["total"]["requests"] == 4


def test_csv_cells_a_spreadsheet_would_run_are_text():
    hostile = ROWS[0].__class__(
        ts=1.0, request_id="-2+3", key_id="@SUM(A1)", client_protocol="openai", alias='=HYPERLINK("http://x")',
        provider="+cmd", account="\tx", upstream_model="\rm", upstream_protocol="openai", error_kind="a,b\n\"c\"",
    )  # fmt: skip
    header, line = list(csv.reader(io.StringIO(usage_csv([hostile]).decode())))
    got = dict(zip(header, line, strict=True))
    assert (got["request_id"], got["key_id"], got["alias"]) == (
        "'-2+3",
        "'@SUM(A1)",
        '\'=HYPERLINK("http://x")',
    )
    assert (got["provider"], got["account"], got["upstream_model"]) == ("'+cmd", "'\tx", "'\rm")
    assert got["error_kind"] == 'a,b\n"c"' and got["latency_ms"] == "0.0"  # quoted by the CSV writer, intact
