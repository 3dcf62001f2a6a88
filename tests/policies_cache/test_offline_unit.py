"""Which failures the offline fallback answers, with which local model, and what the config accepts."""

from __future__ import annotations

import pytest

from smolgate.config import ConfigError, parse_config
from smolgate.errors import ErrorKind, GatewayError, from_status
from smolgate.policies.offline import OfflineFallback
from smolgate.routing import Route

CFG = """
providers:
  - {name: up, protocol: openai, base_url: 'http://127.0.0.1:9/v1'}
  - {name: small, protocol: local, model: /nonexistent/a}
  - {name: big, protocol: local, model: /nonexistent/b}
models:
  - {name: chat, targets: [{provider: up, model: m}]}
  - {name: strict, targets: [{provider: up, model: m}], offline_fallback: 'off'}
  - {name: picky, targets: [{provider: up, model: m}], offline_fallback: big}
  - {name: mixed, targets: [{provider: up, model: m}, {provider: small, model: default}]}
"""
UP = [Route("up", "m")]


def test_upstream_side_failures_fall_back_and_client_errors_never_do():
    fb = OfflineFallback(parse_config(CFG))
    for status in (500, 502, 503, 504, 408, 429, 401, 403):
        assert fb.route("chat", from_status(status, "x"), UP) == Route("small", "default"), status
    assert fb.route("chat", GatewayError(ErrorKind.UPSTREAM, "connection refused"), UP) is not None
    assert fb.route("chat", GatewayError(ErrorKind.TIMEOUT, "first byte"), UP) is not None
    for status in (400, 404, 413, 422):
        assert fb.route("chat", from_status(status, "x"), UP) is None, status
    overflow = from_status(
        400, "This model's maximum context length is 10 tokens. However, your messages resulted in 20 tokens"
    )
    assert fb.route("chat", overflow, UP) is None
    assert fb.route("chat", GatewayError(ErrorKind.QUOTA, "budget spent"), UP) is None


def test_the_model_is_chosen_per_alias():
    fb = OfflineFallback(parse_config(CFG))
    err = from_status(503, "down")
    assert fb.route("strict", err, UP) is None
    assert fb.route("picky", err, UP) == Route("big", "default")
    assert fb.route("up/m", err, UP) == Route("small", "default")  # a direct name: the global setting
    mixed = [Route("up", "m"), Route("small", "default")]
    assert fb.route("mixed", err, mixed) is None  # its own targets already tried the local model
    off = OfflineFallback(parse_config(CFG + "offline_fallback: 'off'\n"))
    assert off.route("chat", err, UP) is None and off.route("picky", err, UP) == Route("big", "default")
    remote_only = parse_config("providers:\n  - {name: up, protocol: openai, base_url: 'http://h/v1'}\n")
    assert OfflineFallback(remote_only).route("x", err, UP) is None  # auto, and no local model: nothing


@pytest.mark.parametrize(
    "extra",
    [
        "offline_fallback: up\n",
        "offline_fallback: nothere\n",
        "models:\n  - {name: a, targets: [{provider: up, model: m}], offline_fallback: up}\n",
    ],
)
def test_the_config_accepts_only_local_providers(extra: str):
    base = "providers:\n  - {name: up, protocol: openai, base_url: 'http://h/v1'}\n  - {name: small, protocol: local}\n"
    with pytest.raises(ConfigError, match=r"offline_fallback: '(up|nothere)' is not a local provider"):
        parse_config(base + extra)


async def test_our_own_accounts_being_busy_does_not_fall_back():
    """The pool's own "every account is at its cap" 429 (a real pool, one slot, no time to wait)."""
    import time

    from smolgate.config import AccountConfig, ProviderConfig
    from smolgate.pool.accounts import AccountPool

    pool = AccountPool(
        ProviderConfig(
            name="up", protocol="openai", base_url="http://h/v1", accounts=[AccountConfig(max_concurrency=1)]
        )
    )
    lease = await pool.acquire()
    with pytest.raises(GatewayError) as busy:
        await pool.acquire(deadline=time.monotonic())
    await lease.release()
    assert busy.value.kind is ErrorKind.RATE_LIMITED
    assert OfflineFallback(parse_config(CFG)).route("chat", busy.value, UP) is None


def test_check_shows_the_offline_fallback(tmp_path):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text(CFG)
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in (out.stdout + out.stderr).splitlines()  # (check prints to stderr)
        if line.count("│") == 3
    }
    assert rows["chat"] == "up/m → offline: small"
    assert rows["picky"] == "up/m → offline: big"
    assert rows["strict"] == "up/m" and rows["mixed"] == "up/m → small/default"
