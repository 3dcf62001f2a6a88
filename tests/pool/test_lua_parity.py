"""The Redis Lua health transitions are the same state machine as health.py (property-based)."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from smolgate.pool import health as H
from smolgate.pool.state_redis import SharedState

# Failures weighted up: the breaker only shows its threshold after several in a row.
EVENTS = st.lists(
    st.sampled_from(["ok", "neutral", "rate_limited", "failure", "failure", "failure", "auth"]),
    min_size=1,
    max_size=12,
)
_ids = itertools.count()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS, waits=st.lists(st.integers(1, 50), min_size=12, max_size=12))
@example(events=["rate_limited", "rate_limited"], waits=[30, 10] + [1] * 10)  # a shorter 429 never shortens
@example(events=["failure", "failure", "failure", "ok", "failure"], waits=[1] * 12)
def test_record_script_matches_python(redis_url: str, events: list[str], waits: list[int]) -> None:
    asyncio.run(_check(redis_url, events, waits))


async def _check(url: str, events: list[str], waits: list[int]) -> None:
    shared = await SharedState(url).start()
    prefix = f"smolgate:pool:parity:{next(_ids)}"
    h = H.Health()
    now = 1_900_000_000.0
    got: list[tuple[str, float, str]] = []
    try:
        for ev, w in zip(events, waits, strict=False):  # waits has room for the longest script
            until = now + w
            if ev in ("ok", "neutral"):
                h.on_success(reset_backoff=ev == "ok")
            elif ev == "rate_limited":
                h.on_rate_limited(until, "429")
            elif ev == "failure":
                h.on_failure(now, 3, 100.0, "502")
            else:
                h.on_auth("401")
            shared.record(
                prefix,
                ev,
                now,
                until=until,
                cooldown=100.0,
                threshold=3,
                reason=h.reason or "",
                on_result=got.append,
            )
            await shared.drain()
            state, s_until, _ = got[-1]
            assert state == h.state, (events, got)
            if h.state in (H.COOLING, H.OPEN):
                assert s_until == pytest.approx(h.until, rel=0, abs=1e-3)
    finally:
        await shared.close()
