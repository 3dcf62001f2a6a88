"""Secrets, the pepper, periods and durations; and each protocol's rendering of a spent budget."""

from __future__ import annotations

import calendar
import hashlib
import hmac
import os
import stat

import orjson
import pytest

from smolgate.config import Config
from smolgate.errors import ErrorKind, GatewayError
from smolgate.protocols import PROTOCOLS
from smolgate.vkeys import (
    InvalidKeyField,
    hash_secret,
    load_pepper,
    new_key,
    parse_duration,
    period_bounds,
    period_tag,
    rotated,
)


def test_a_secret_has_256_random_bits_and_only_its_hmac_is_kept():
    row, secret = new_key(b"p" * 32, "k")
    assert secret.startswith("sg-") and len(secret) == 3 + 43  # 32 bytes, urlsafe base64
    assert row.prefix == secret[:12] and row.id.startswith("vk_")
    assert row.hash == hmac.new(b"p" * 32, secret.encode(), hashlib.sha256).hexdigest()
    assert secret not in repr(row)
    again, secret2 = rotated(b"p" * 32, row)
    assert again.id == row.id and secret2 != secret and again.hash == hash_secret(b"p" * 32, secret2)


def test_the_pepper_file_is_created_once_private_and_shared(tmp_path, monkeypatch):
    monkeypatch.delenv("SMOLGATE_KEY_PEPPER", raising=False)
    cfg = Config(data_dir=str(tmp_path / "home"))
    first = load_pepper(cfg)
    path = tmp_path / "home" / "key_pepper"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_pepper(cfg) == first and len(first) >= 32
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_a_pepper_file_others_can_read_is_refused(tmp_path, monkeypatch):
    # like the master key file: a pepper readable by other users is a leaked pepper
    monkeypatch.delenv("SMOLGATE_KEY_PEPPER", raising=False)
    cfg = Config(data_dir=str(tmp_path))
    load_pepper(cfg)
    (tmp_path / "key_pepper").chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        load_pepper(cfg)


def test_the_pepper_from_the_environment_wins_and_must_be_long(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOLGATE_KEY_PEPPER", "a-shared-pepper-for-all-replicas")
    assert load_pepper(Config(data_dir=str(tmp_path))) == b"a-shared-pepper-for-all-replicas"
    assert not (tmp_path / "key_pepper").exists()
    monkeypatch.setenv("SMOLGATE_KEY_PEPPER", "short")
    with pytest.raises(ValueError, match="too short"):
        load_pepper(Config(data_dir=str(tmp_path)))


def test_durations():
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("1d12h") == 36 * 3600
    assert parse_duration("90m") == 5400
    for bad in ("", "30", "d", "-1d", "1y", "1d junk"):
        with pytest.raises(InvalidKeyField):
            parse_duration(bad)


def test_budget_periods_are_utc_days_and_months():
    t = calendar.timegm((2026, 12, 31, 23, 59, 0))
    day, new_year = calendar.timegm((2026, 12, 31, 0, 0, 0)), calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert period_bounds("day", t) == (day, new_year)
    assert period_bounds("month", t) == (calendar.timegm((2026, 12, 1, 0, 0, 0)), new_year)
    assert period_bounds("total", t) == (0.0, None)
    assert (period_tag("day", t), period_tag("month", t), period_tag("total", t)) == (
        "d20261231",
        "m202612",
        "total",
    )


QUOTA_SHAPES = {  # protocol → (status, a check of its body)
    "openai": (429, lambda b: b["error"]["type"] == b["error"]["code"] == "insufficient_quota"),
    "openai-responses": (429, lambda b: b["error"]["code"] == "insufficient_quota"),
    "anthropic": (402, lambda b: b["type"] == "error" and b["error"]["type"] == "billing_error"),
    "gemini": (429, lambda b: b["error"]["status"] == "RESOURCE_EXHAUSTED" and b["error"]["code"] == 429),
    "ollama": (429, lambda b: "budget" in b["error"]),
}


@pytest.mark.parametrize("name", sorted(QUOTA_SHAPES))
def test_a_spent_budget_renders_as_each_protocols_quota_error(name):
    err = GatewayError(ErrorKind.QUOTA, "key vk_1 has spent its daily budget ($1.00)", retry_after=60)
    reply = PROTOCOLS[name].codec.encode_error(err)
    status, check = QUOTA_SHAPES[name]
    assert reply.status == status and check(orjson.loads(reply.body))
    assert reply.headers["retry-after"] == "60"
    assert not err.retryable  # another account would not help: the client's budget is spent
