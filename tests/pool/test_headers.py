from datetime import datetime
from email.utils import formatdate

import pytest

from smolgate.pool.ratelimit_headers import parse, parse_duration

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    "text,secs",
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("30", 30.0),
        ("250us", 0.00025),
    ],
)
def test_go_durations(text: str, secs: float) -> None:
    assert parse_duration(text) == pytest.approx(secs)


@pytest.mark.parametrize("text", ["", "abc", "1x", "s1", "1s junk"])
def test_bad_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_openai_headers_case_insensitive() -> None:
    info = parse(
        {
            "X-RateLimit-Remaining-Requests": "12",
            "x-ratelimit-remaining-tokens": "3400",
            "x-ratelimit-limit-requests": "60",
            "X-Ratelimit-Reset-Requests": "6m0s",
            "x-ratelimit-reset-tokens": "20ms",
            "content-type": "application/json",
        },
        NOW,
    )
    assert (info.remaining_requests, info.remaining_tokens, info.limit_requests) == (12, 3400, 60)
    assert info.reset_requests == pytest.approx(NOW + 360, rel=0, abs=1e-6)
    assert info.reset_tokens == pytest.approx(NOW + 0.02, rel=0, abs=1e-6)
    assert info.retry_after is None and not info.empty


def test_anthropic_headers_pick_tightest_token_budget() -> None:
    info = parse(
        {
            "anthropic-ratelimit-requests-remaining": "4",
            "anthropic-ratelimit-requests-reset": "2027-01-15T08:00:30Z",
            "anthropic-ratelimit-tokens-remaining": "90000",
            "anthropic-ratelimit-tokens-reset": "2027-01-15T08:00:10Z",
            "anthropic-ratelimit-output-tokens-remaining": "500",
            "anthropic-ratelimit-output-tokens-reset": "2027-01-15T08:00:05+00:00",
            "retry-after": "7",
        },
        NOW,
    )
    assert info.remaining_requests == 4 and info.remaining_tokens == 500
    assert info.reset_requests == datetime.fromisoformat("2027-01-15T08:00:30+00:00").timestamp()
    assert info.reset_tokens == datetime.fromisoformat("2027-01-15T08:00:05+00:00").timestamp()
    assert info.retry_after == 7.0


def test_retry_after_forms() -> None:
    assert parse({"Retry-After": "2"}, NOW).retry_after == 2.0
    assert parse({"retry-after-ms": "1500", "retry-after": "9"}, NOW).retry_after == 1.5  # ms wins
    date = formatdate(NOW + 30, usegmt=True)
    assert parse({"retry-after": date}, NOW).retry_after == pytest.approx(30, abs=1)
    assert parse({"retry-after": "garbage"}, NOW).retry_after is None
    assert parse({"retry-after": formatdate(NOW - 30, usegmt=True)}, NOW).retry_after == 0.0


def test_exhausted_until() -> None:
    info = parse(
        {
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "2s",
            "x-ratelimit-remaining-tokens": "100",
            "x-ratelimit-reset-tokens": "9s",
        },
        NOW,
    )
    assert info.exhausted_until(NOW) == pytest.approx(NOW + 2, rel=0, abs=1e-6)
    assert parse({"x-ratelimit-remaining-requests": "3"}, NOW).exhausted_until(NOW) is None
    assert parse(None, NOW).empty and parse({"server": "x"}, NOW).empty
