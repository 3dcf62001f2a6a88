"""Every `Store` method, on a real SQLite file and a real PostgreSQL database (the `store` fixture runs each test on
both)."""

from __future__ import annotations

import time

import pytest

from smolgate.store import AccountRow, AuditRow, Conflict, KeyRow, Store, StoreError, UsageBucket, UsageRow

EVIL = "x'); DROP TABLE usage;--"
HOUR = 3600.0
T0 = 1_800_000_000.0  # an hour boundary (Unix seconds)


def usage(ts: float, **kw: object) -> UsageRow:
    base: dict[str, object] = {
        "request_id": f"req-{ts}",
        "key_id": "vk_a",
        "client_protocol": "openai",
        "alias": "fast",
        "provider": "up",
        "account": "acct1",
        "upstream_model": "gpt-x",
        "upstream_protocol": "openai",
    }
    return UsageRow(ts=ts, **{**base, **kw})  # type: ignore[arg-type]


def key(id: str, name: str, hash: str, created: float = T0, **kw: object) -> KeyRow:
    return KeyRow(id=id, name=name, prefix="sg-" + id, hash=hash, created=created, **kw)  # type: ignore[arg-type]


async def test_usage_row_round_trips(store: Store) -> None:
    row = usage(
        T0 + 1.25,
        input_tokens=120,
        cached_tokens=100,
        cache_write_tokens=7,
        output_tokens=50,
        reasoning_tokens=20,
        cost_usd=0.0123,
        latency_ms=321.5,
        ttft_ms=45.25,
        status=502,
        error_kind="upstream",
        stream=True,
        local=False,
        attempts=3,
    )
    local = usage(
        T0 + 2,
        key_id=None,
        alias=None,
        provider=None,
        account=None,
        upstream_model=None,
        upstream_protocol="local",
        local=True,
    )
    await store.add_usage([row, local])
    assert await store.recent_usage() == [local, row]  # newest first


async def test_recent_usage_limit_and_key(store: Store) -> None:
    await store.add_usage([usage(T0 + i, key_id="vk_a" if i % 2 else "vk_b") for i in range(10)])
    newest = await store.recent_usage(limit=3)
    assert [r.ts for r in newest] == [T0 + 9, T0 + 8, T0 + 7]
    of_b = await store.recent_usage(limit=100, key_id="vk_b")
    assert [r.ts for r in of_b] == [T0 + 8, T0 + 6, T0 + 4, T0 + 2, T0]


async def test_totals_by_every_group(store: Store) -> None:
    await store.add_usage(
        [
            usage(T0 + 10, cost_usd=1.0, input_tokens=10, output_tokens=5, ttft_ms=100.0, latency_ms=200.0),
            usage(
                T0 + 20,
                cost_usd=2.0,
                key_id="vk_b",
                alias="smart",
                upstream_model="claude-x",
                provider="anth",
                account="acct1",
                status=429,
                error_kind="rate_limited",
            ),
            usage(T0 + HOUR + 5, cost_usd=4.0, key_id=None, error_kind="upstream"),  # an in-stream error
        ]
    )
    since, until = T0, T0 + 2 * HOUR
    (everything,) = await store.usage_totals(since, until)
    assert (everything.group, everything.requests, everything.errors) == (None, 3, 2)
    assert everything.cost_usd == pytest.approx(7.0)
    assert (everything.input_tokens, everything.output_tokens) == (10, 5)
    assert (everything.ttft_ms_sum, everything.ttft_count, everything.latency_ms_sum) == (100.0, 1, 200.0)

    async def groups(by: str) -> dict[str | None, tuple[int, float]]:
        rows = await store.usage_totals(since, until, by=by)  # type: ignore[arg-type]
        return {b.group: (b.requests, round(b.cost_usd, 6)) for b in rows}

    assert await groups("key") == {"vk_a": (1, 1.0), "vk_b": (1, 2.0), None: (1, 4.0)}
    assert await groups("model") == {"gpt-x": (2, 5.0), "claude-x": (1, 2.0)}
    assert await groups("alias") == {"fast": (2, 5.0), "smart": (1, 2.0)}
    assert await groups("account") == {"up/acct1": (2, 5.0), "anth/acct1": (1, 2.0)}
    assert await groups("provider") == {"up": (2, 5.0), "anth": (1, 2.0)}
    assert await groups("status") == {"2xx": (2, 5.0), "4xx": (1, 2.0)}
    top = await store.usage_totals(since, until, by="key", limit=2)  # by cost, descending
    assert [b.group for b in top] == [None, "vk_b"]


async def test_totals_of_nothing_is_one_zero_row(store: Store) -> None:
    assert await store.usage_totals(T0, T0 + HOUR) == [UsageBucket(group=None)]
    assert await store.usage_totals(T0, T0 + HOUR, by="key") == []


async def test_series_by_minute_and_hour(store: Store) -> None:
    rows = [usage(T0 + 30), usage(T0 + 90), usage(T0 + 95), usage(T0 + 2 * HOUR + 1, key_id="vk_b")]
    await store.add_usage(rows)
    by_minute = await store.usage_series(T0, T0 + 3 * HOUR, step=60)
    assert [(b.bucket, b.requests) for b in by_minute] == [(T0, 1), (T0 + 60, 2), (T0 + 2 * HOUR, 1)]
    by_hour = await store.usage_series(T0, T0 + 3 * HOUR, step=3600)
    assert [(b.bucket, b.requests) for b in by_hour] == [(T0, 3), (T0 + 2 * HOUR, 1)]
    two_hours = await store.usage_series(T0, T0 + 3 * HOUR, step=7200)
    assert [(b.bucket, b.requests) for b in two_hours] == [(T0, 3), (T0 + 2 * HOUR, 1)]
    of_b = await store.usage_series(T0, T0 + 3 * HOUR, step=3600, key_id="vk_b")
    assert [(b.group, b.bucket, b.requests) for b in of_b] == [("vk_b", T0 + 2 * HOUR, 1)]
    with pytest.raises(ValueError):
        await store.usage_series(T0, T0 + HOUR, step=600)


async def test_key_spend_since(store: Store) -> None:
    now = time.time()
    day_start = now // 86400 * 86400
    await store.add_usage(
        [
            usage(day_start - 10 * 86400, cost_usd=5.0),  # last month-ish
            usage(day_start - 60, cost_usd=1.5),  # yesterday
            usage(day_start + 1, cost_usd=0.25),  # today
            usage(now - 1, cost_usd=0.5),
            usage(now - 1, cost_usd=9.0, key_id="vk_other"),
        ]
    )
    assert await store.key_spend("vk_a", day_start) == pytest.approx(0.75)
    assert await store.key_spend("vk_a", day_start - 86400) == pytest.approx(2.25)
    assert await store.key_spend("vk_a", 0) == pytest.approx(7.25)
    assert await store.key_spend("vk_nobody", 0) == 0.0


async def test_prune_raw_and_rollups(store: Store) -> None:
    await store.add_usage([usage(T0 + i * HOUR) for i in range(5)])
    assert await store.prune(T0 + 2 * HOUR, 0) == 2  # raw only
    assert [r.ts for r in await store.recent_usage()] == [T0 + i * HOUR for i in (4, 3, 2)]
    (total,) = await store.usage_totals(T0, T0 + 5 * HOUR)
    assert total.requests == 5  # rollups kept
    assert await store.prune(0, T0 + 3 * HOUR) == 0
    (total,) = await store.usage_totals(T0, T0 + 5 * HOUR)
    assert total.requests == 2


async def test_hostile_text_is_data(store: Store) -> None:
    await store.add_usage([usage(T0, alias=EVIL, key_id=EVIL, account=EVIL, request_id=EVIL)])
    await store.add_key(key("vk_1", EVIL, "h1", models=[EVIL, "b"]))
    await store.audit(AuditRow(ts=T0, actor="cli", action="key.create", target=EVIL, detail={"name": EVIL}))
    assert (await store.recent_usage())[0].alias == EVIL
    assert [b.group for b in await store.usage_totals(T0, T0 + 60, by="alias")] == [EVIL]
    assert await store.key_spend(EVIL, T0) == 0.0
    found = await store.key(EVIL)
    assert found is not None and found.name == EVIL and found.models == [EVIL, "b"]
    assert (await store.audit_log())[0].detail == {"name": EVIL}


async def test_text_postgres_cannot_hold_is_tamed_not_fatal(store: Store) -> None:
    """A client's model name is free text: a NUL (PostgreSQL's TEXT refuses it) or a megabyte of it must neither
    fail the batch (the writer would retry it forever) nor bloat every rollup row."""
    await store.add_usage([usage(T0, alias="a\x00b", request_id="r1"), usage(T0 + 1, alias="x" * 5000)])
    rows = await store.recent_usage()
    assert [r.alias for r in rows] == ["x" * 256, "a\ufffdb"]
    groups = {b.group for b in await store.usage_totals(T0, T0 + 60, by="alias")}
    assert groups == {"x" * 256, "a\ufffdb"}
    await store.add_key(key("vk_nul", "n\x00ul", "hash-nul"))
    found = await store.key("vk_nul")
    assert found is not None and found.name == "n\ufffdul"


async def test_keys(store: Store) -> None:
    a = key(
        "vk_a",
        "ci",
        "hash-a",
        models=["fast", "smart"],
        rpm=60,
        tpm=1000,
        max_concurrency=2,
        budget_usd=12.5,
        period="month",
        expires=T0 + 86400,
    )
    b = key("vk_b", "laptop", "hash-b", created=T0 + 1)
    await store.add_key(a)
    await store.add_key(b)
    assert await store.key_by_hash("hash-a") == a
    assert await store.key_by_hash("nope") is None
    assert await store.key("vk_b") == b
    assert await store.key("ci") == a
    assert await store.key("nobody") is None
    assert await store.keys() == [a, b]
    with pytest.raises(Conflict):  # the hash is unique
        await store.add_key(key("vk_c", "other", "hash-a"))
    with pytest.raises(Conflict):
        await store.add_key(key("vk_a", "again", "hash-z"))

    revoked = KeyRow(**{**_fields(a), "revoked": T0 + 5})
    await store.update_key(revoked)
    assert await store.keys() == [b]
    assert await store.keys(include_revoked=True) == [revoked, b]
    rotated = key("vk_a2", "ci", "hash-a2", created=T0 + 6)  # a new key with the name: the live one wins
    await store.add_key(rotated)
    assert await store.key("ci") == rotated
    with pytest.raises(StoreError):
        await store.update_key(key("vk_missing", "x", "hash-m"))
    with pytest.raises(Conflict):  # rotating onto another key's hash
        await store.update_key(KeyRow(**{**_fields(b), "hash": "hash-a2"}))


async def test_accounts(store: Store) -> None:
    one = AccountRow(
        id="acc_1",
        provider="openai",
        name="team",
        key_ciphertext=b"\x00\xffcipher",
        created=T0,
        rpm=10,
        tpm=100,
        max_concurrency=3,
        weight=2.5,
    )
    two = AccountRow(id="acc_2", provider="anthropic", name="team", key_ciphertext=b"c2", created=T0 + 1)
    await store.add_account(one)
    await store.add_account(two)
    assert await store.accounts() == [one, two]
    with pytest.raises(Conflict):  # one name per provider
        await store.add_account(
            AccountRow(id="acc_3", provider="openai", name="team", key_ciphertext=b"", created=T0)
        )
    off = AccountRow(**{**_fields(one), "enabled": False, "key_ciphertext": b"rotated"})
    await store.update_account(off)
    assert await store.accounts() == [off, two]
    assert await store.delete_account("acc_1") is True
    assert await store.delete_account("acc_1") is False
    assert await store.accounts() == [two]
    with pytest.raises(StoreError):
        await store.update_account(off)


async def test_audit_log(store: Store) -> None:
    rows = [
        AuditRow(
            ts=T0 + i,
            actor="admin-api",
            action=f"key.create{i}",
            target=f"vk_{i}",
            source="10.0.0.1",
            detail={"n": i, "ok": True, "x": None, "f": 1.5},
        )
        for i in range(5)
    ]
    for r in rows:
        await store.audit(r)
    await store.audit(AuditRow(ts=T0 + 4, actor="cli", action="later-same-ts"))
    log = await store.audit_log()
    assert [r.action for r in log] == ["later-same-ts", *(f"key.create{i}" for i in (4, 3, 2, 1, 0))]
    assert log[1] == rows[4]
    assert [r.ts for r in await store.audit_log(limit=2)] == [T0 + 4, T0 + 4]
    assert [r.ts for r in await store.audit_log(since=T0 + 3)] == [T0 + 4, T0 + 4, T0 + 3]


def _fields(row: object) -> dict[str, object]:
    return {f: getattr(row, f) for f in row.__struct_fields__}  # type: ignore[attr-defined]
