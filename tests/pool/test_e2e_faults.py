"""End to end: a real gateway (uvicorn) in front of fault-injecting fake upstreams on 127.0.0.1.

The pool's promises are judged from the outside: what the client saw, and what the upstream saw.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from tests.fakes.fault_upstream import FaultUpstream
from tests.gateway_server import GatewayServer

FAULTS = {
    "k-ok": "ok",
    "k-429": "429",
    "k-429b": "429_bare",
    "k-count": "countdown",
    "k-5xx": "5xx",
    "k-slow": "slow",
    "k-reset": "reset",
    "k-die": "die",
    "k-401": "401",
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accounts(keys: dict[str, str], extra: str = "") -> str:
    return "".join(f"      - {{name: {name}, api_key: {key}{extra}}}\n" for name, key in keys.items())


@pytest.fixture(scope="module")
def fault_up() -> Iterator[FaultUpstream]:
    up = FaultUpstream(FAULTS, slow=1.0, budget=25, window=2.0).start()
    yield up
    up.stop()


async def _chat(http: aiohttp.ClientSession, url: str, model: str, i: int, stream: bool) -> str | None:
    """One client request; None if it succeeded, else what went wrong."""
    body = {"model": model, "messages": [{"role": "user", "content": f"hello {i}"}], "stream": stream}
    async with http.post(url + "/v1/chat/completions", json=body) as r:
        raw = await r.read()
        if r.status != 200:
            return f"{r.status} {raw[:200]!r}"
        if not stream:
            text = orjson.loads(raw)["choices"][0]["message"]["content"]
            return None if f"hello {i}" in text else f"wrong answer {text!r}"
        if b'"error"' in raw or not raw.rstrip().endswith(b"data: [DONE]"):
            return f"broken stream {raw[-200:]!r}"
        return None


async def _drive(url: str, model: str, n: int, concurrency: int, stream_every: int = 3) -> list[str]:
    sem = asyncio.Semaphore(concurrency)
    failures: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def one(i: int) -> None:
            async with sem:
                err = await _chat(http, url, model, i, stream=i % stream_every == 0)
                if err:
                    failures.append(err)

        await asyncio.gather(*(one(i) for i in range(n)))
    return failures


async def test_two_thousand_requests_through_the_fault_mix(fault_up: FaultUpstream) -> None:
    names = {
        "healthy": "k-ok",
        "throttled": "k-429",
        "throttled-bare": "k-429b",
        "counting": "k-count",
        "erroring": "k-5xx",
        "slow": "k-slow",
        "resetting": "k-reset",
        "dying": "k-die",
        "revoked": "k-401",
    }
    cfg = f"""
providers:
  - name: refused            # nothing listens here: every connect is refused (keyless: one anonymous account)
    protocol: openai
    base_url: http://127.0.0.1:{_closed_port()}/v1
    timeouts: {{connect: 0.5, first_byte: 0.5}}
    breaker: {{failures: 2, cooldown: 30}}
  - name: mix
    protocol: openai
    base_url: {fault_up.base_url}
    strategy: round_robin      # spreads onto every faulty account, unlike the smarter strategies
    timeouts: {{connect: 1, first_byte: 0.3, idle: 2, total: 10}}
    breaker: {{failures: 2, cooldown: 0.25}}   # frequent half-open probes: faults keep being met
    accounts:
{_accounts(names)}models:
  - name: m
    targets: [{{provider: refused, model: gpt-fake}}, {{provider: mix, model: gpt-fake}}]
retry: {{attempts: 12, deadline: 30}}
"""
    with GatewayServer(cfg) as gw:
        failures = await _drive(gw.url, "m", 2000, 32)
        async with aiohttp.ClientSession() as http, http.get(gw.url + "/admin/accounts") as r:
            snap = {a["account"]: a for a in (await r.json())["accounts"]}
    stats = fault_up.stats
    print({k: (v.requests, v.ok, v.throttled) for k, v in stats.items()})
    print({k: (a["state"], a["reason"], a["recent_errors"][-2:]) for k, a in snap.items()})
    assert failures == [], failures[:5]
    for key in FAULTS:  # every fault was actually met
        assert stats[key].requests > 0, key
    assert stats["k-count"].throttled == 0  # its countdown was respected: avoided before it 429d
    assert stats["k-401"].requests <= 32  # disabled at the first 401 (plus the ones already in flight)
    assert snap["revoked"]["state"] == "disabled" and "401" in snap["revoked"]["reason"]
    assert "k-401" not in orjson.dumps(snap).decode()
    assert stats["k-ok"].ok >= 1500  # the healthy account carried the load


async def test_stream_that_died_after_reaching_the_client_is_not_retried(fault_up: FaultUpstream) -> None:
    fault_up.set_mode("k-late", "die_late")
    cfg = f"""
providers:
  - name: late
    protocol: openai
    base_url: {fault_up.base_url}
    accounts:
      - {{name: dies-late, api_key: k-late}}
      - {{name: fine, api_key: k-fine}}
models:
  - name: m
    targets: [{{provider: late, model: gpt-fake}}]
"""
    fault_up.set_mode("k-fine", "ok")
    with GatewayServer(cfg) as gw:
        async with aiohttp.ClientSession() as http:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            async with http.post(gw.url + "/v1/chat/completions", json=body) as r:
                raw = await r.read()
    assert fault_up.stats["k-late"].requests == 1 and fault_up.stats["k-fine"].requests == 0
    assert b"Hello" in raw and b"error" in raw  # what arrived, then the in-stream error — no silent retry


async def test_caps_and_weights_seen_from_the_upstream() -> None:
    up = FaultUpstream(
        {
            "c1": "ok",
            "c2": "ok",
            "c3": "ok",
            "w-big": "ok",
            "w-small": "ok",
            "e1": "ok",
            "e2": "ok",
            "e3": "ok",
            "e4": "ok",
        },
        hold=0.01,
    ).start()
    cfg = f"""
providers:
  - name: capped
    protocol: openai
    base_url: {up.base_url}
    strategy: least_in_flight
    accounts:
{_accounts({"c1": "c1", "c2": "c2", "c3": "c3"}, ", max_concurrency: 4")}  - name: weighted
    protocol: openai
    base_url: {up.base_url}
    strategy: weighted
    accounts:
      - {{name: big, api_key: w-big, weight: 3}}
      - {{name: small, api_key: w-small, weight: 1}}
  - name: even
    protocol: openai
    base_url: {up.base_url}
    strategy: round_robin
    accounts:
{_accounts({"e1": "e1", "e2": "e2", "e3": "e3", "e4": "e4"})}models:
  - {{name: capped, targets: [{{provider: capped, model: gpt-fake}}]}}
  - {{name: weighted, targets: [{{provider: weighted, model: gpt-fake}}]}}
  - {{name: even, targets: [{{provider: even, model: gpt-fake}}]}}
"""
    try:
        with GatewayServer(cfg) as gw:
            fails = await _drive(gw.url, "capped", 400, 200)
            fails += await _drive(gw.url, "weighted", 400, 200)
            fails += await _drive(gw.url, "even", 400, 200)
    finally:
        up.stop()
    s = up.stats
    assert fails == []
    peaks = {k: s[k].max_in_flight for k in ("c1", "c2", "c3")}
    assert all(p <= 4 for p in peaks.values()) and max(peaks.values()) == 4, peaks
    assert sum(s[k].ok for k in ("c1", "c2", "c3")) == 400
    assert abs(s["w-big"].ok / s["w-small"].ok - 3) <= 0.15, (s["w-big"], s["w-small"])
    assert all(abs(s[k].ok - 100) <= 5 for k in ("e1", "e2", "e3", "e4")), collections.Counter(
        {k: s[k].ok for k in ("e1", "e2", "e3", "e4")}
    )


class _Serve:
    """`smolgate serve` as its own process (a replica)."""

    def __init__(self, cfg_path: str) -> None:
        import subprocess
        import sys
        import time
        from pathlib import Path

        self.port = _closed_port()
        exe = Path(sys.executable).with_name("smolgate")
        self.proc = subprocess.Popen(
            [str(exe), "serve", "--config", cfg_path, "--port", str(self.port), "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        end = time.monotonic() + 60
        while time.monotonic() < end and self.proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"replica did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return err


async def test_two_gateway_processes_share_one_cap_and_one_cooldown(redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    up = FaultUpstream({"k-shared": "ok"}, hold=0.01).start()
    cfg = tmp_path / "replica.yaml"
    cfg.write_text(f"""
state: {redis_url}
providers:
  - name: shared
    protocol: openai
    base_url: {up.base_url}
    accounts:
      - {{name: only, api_key: k-shared, max_concurrency: 3}}
models:
  - {{name: m, targets: [{{provider: shared, model: gpt-fake}}]}}
""")
    replicas = [_Serve(str(cfg)), _Serve(str(cfg))]
    try:
        fails = await asyncio.gather(*(_drive(r.url, "m", 150, 75) for r in replicas))
        st = up.stats["k-shared"]
        assert fails == [[], []] and st.ok == 300
        assert st.max_in_flight == 3, st  # seen by the upstream: one cap for both processes together
        up.set_mode("k-shared", "429")  # Retry-After: 1
        async with aiohttp.ClientSession() as http:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(replicas[0].url + "/v1/chat/completions", json=body) as r:
                assert r.status == 429
            before = st.requests
            await asyncio.sleep(0.1)  # the cooldown reaches Redis
            async with http.post(replicas[1].url + "/v1/chat/completions", json=body) as r:
                assert r.status == 429 and r.headers.get("retry-after")
            assert st.requests == before  # the other replica cooled down without asking the upstream
            up.set_mode("k-shared", "ok")
            await asyncio.sleep(1.0)
            async with http.post(replicas[1].url + "/v1/chat/completions", json=body) as r:
                assert r.status == 200  # and recovered
    finally:
        logs = [r.stop() for r in replicas]
        up.stop()
    assert not any("Traceback" in x for x in logs), logs
