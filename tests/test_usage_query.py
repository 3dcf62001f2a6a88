"""Times, durations and steps as people write them for `smolgate usage` and `/admin/usage`."""

from __future__ import annotations

import pytest

from smolgate.store import UsageBucket
from smolgate.usage_query import derived, parse_duration, parse_group, parse_step, parse_time, parse_window

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("24h", 86400), ("7d", 604800), ("30d", 2592000), ("90s", 90), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float):
    assert parse_duration(text) == seconds
    assert parse_time(text, NOW) == NOW - seconds


def test_absolute_times():
    assert parse_time("1700000000", NOW) == 1_700_000_000
    assert parse_time("2026-12-01", NOW) == 1_796_083_200  # midnight UTC
    assert parse_time("2026-12-01T08:00:00Z", NOW) == 1_796_083_200 + 8 * 3600
    assert parse_time("2026-12-01T09:00:00+01:00", NOW) == 1_796_083_200 + 8 * 3600


@pytest.mark.parametrize(
    "text", ["", "24", "h", "-1h", "0h", "1y", "soon", "2026-13-01", "1h; drop table usage"]
)
def test_bad_times_say_what_works(text: str):
    with pytest.raises(ValueError, match=r"is not a (time|duration|positive duration)"):
        parse_time(text, NOW) if text != "24" else parse_duration(text)


def test_a_bad_value_is_quoted_short():
    with pytest.raises(ValueError) as e:
        parse_time("x" * 500, NOW)
    assert len(str(e.value)) < 200


def test_window_order_groups_and_steps():
    assert parse_window("2h", "1h", NOW) == (NOW - 7200, NOW - 3600)
    with pytest.raises(ValueError, match="later"):
        parse_window("1h", "2h", NOW)
    assert parse_group(None) is None and parse_group("key") == "key"
    with pytest.raises(ValueError, match="one of key, model"):
        parse_group("colour")
    assert [parse_step(s) for s in ("1m", "60", "1h", "3600", "6h", "1d")] == [
        60,
        60,
        3600,
        3600,
        21600,
        86400,
    ]
    for bad in ("30s", "90m", "5m", "0", "1.5h"):
        with pytest.raises(ValueError, match=r"whole hours|not a positive"):
            parse_step(bad)


def test_derived_figures_of_a_bucket():
    lat = [0] * 22
    lat[7], lat[9] = 3, 1  # three requests in [64, 128) ms, one in [256, 512)
    ttft = [0] * 22
    ttft[5] = 2  # two first tokens in [16, 32) ms
    b = UsageBucket(group=None, requests=4, errors=1, latency_ms_sum=600.0, ttft_ms_sum=40.0, ttft_count=2,
                    latency_hist=tuple(lat), ttft_hist=tuple(ttft))  # fmt: skip
    d = derived(b)
    assert (d["error_pct"], d["avg_latency_ms"], d["avg_ttft_ms"]) == (25.0, 150.0, 20.0)
    assert d["latency_p50_ms"] == 64 + 64 * 2 / 3  # rank 2 of the 3 in [64, 128)
    assert d["latency_p99_ms"] == pytest.approx(256 + 256 * 0.96)  # rank 3.96: 0.96 of the one in [256, 512)
    assert (d["ttft_p50_ms"], d["ttft_p99_ms"]) == (24.0, pytest.approx(16 + 16 * 0.99))
    none = derived(UsageBucket(group=None))
    assert none["avg_latency_ms"] is None and none["latency_p50_ms"] is None and none["ttft_p99_ms"] is None
