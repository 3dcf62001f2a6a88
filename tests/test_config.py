"""Config parsing: env substitution, validation errors that name the field and line, routing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from smolgate.config import ConfigError, parse_config
from smolgate.errors import GatewayError
from smolgate.routing import Route, Router

GOOD = """
providers:
  - name: up1
    protocol: openai
    base_url: http://127.0.0.1:9001/v1
    accounts:
      - api_key: ${UP1_KEY}
  - name: up2
    protocol: anthropic
    base_url: http://127.0.0.1:9002
models:
  - name: fast
    targets:
      - {provider: up1, model: gpt-4o-mini}
    fallbacks: [backup]
  - name: backup
    targets:
      - {provider: up2, model: claude-x}
    fallbacks: [fast]
"""


def test_env_substitution_and_account_names(monkeypatch):
    monkeypatch.setenv("UP1_KEY", "sk-secret-123")
    cfg = parse_config(GOOD)
    acct = cfg.providers[0].accounts[0]
    assert acct.api_key == "sk-secret-123"
    assert acct.name == "up1#0"
    assert "sk-secret-123" not in repr(acct) and "sk-secret-123" not in repr(cfg)


def test_missing_env_var_names_the_line(monkeypatch):
    monkeypatch.delenv("UP1_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"<config>:7: environment variable UP1_KEY"):
        parse_config(GOOD)


def test_env_default(monkeypatch):
    monkeypatch.delenv("UP1_KEY", raising=False)
    cfg = parse_config(GOOD.replace("${UP1_KEY}", "${UP1_KEY:-fallback}"))
    assert cfg.providers[0].accounts[0].api_key == "fallback"


def test_wrong_type_names_field_and_line():
    bad = "providers:\n  - name: x\n    protocol: smtp\n    base_url: http://h\n"
    with pytest.raises(ConfigError) as info:
        parse_config(bad)
    msg = str(info.value)
    assert ":3:" in msg and "providers[0].protocol" in msg


def test_unknown_field_is_rejected():
    with pytest.raises(ConfigError, match="provders|unknown"):
        parse_config("provders: []\n")


def test_dangling_references():
    with pytest.raises(ConfigError, match="no provider named 'nope'"):
        parse_config("models:\n  - name: a\n    targets: [{provider: nope, model: m}]\n")
    with pytest.raises(ConfigError, match="no model alias named 'ghost'"):
        parse_config(
            "providers:\n  - {name: p, protocol: ollama, base_url: http://h}\n"
            "models:\n  - name: a\n    targets: [{provider: p, model: m}]\n    fallbacks: [ghost]\n"
        )


def test_router_orders_targets_then_fallbacks_and_survives_cycles(monkeypatch):
    monkeypatch.setenv("UP1_KEY", "k")
    r = Router(parse_config(GOOD))
    assert r.resolve("fast") == [Route("up1", "gpt-4o-mini"), Route("up2", "claude-x")]
    assert r.resolve("backup") == [Route("up2", "claude-x"), Route("up1", "gpt-4o-mini")]
    assert r.resolve("up2/any-model") == [Route("up2", "any-model")]
    with pytest.raises(GatewayError) as info:
        r.resolve("missing")
    assert info.value.status == 404


def test_check_command(tmp_path, monkeypatch):
    monkeypatch.setenv("UP1_KEY", "sk-dont-print-me")
    p = tmp_path / "c.yaml"
    p.write_text(GOOD)
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "check", "--config", str(p)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "fast" in text and "up1/gpt-4o-mini" in text and "sk-dont-print-me" not in text
    p.write_text("providers:\n  - name: x\n    protocol: smtp\n")
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "check", "--config", str(p)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "protocol" in (out.stdout + out.stderr)


@pytest.mark.parametrize(
    "value",
    [
        "sk-abc #not-a-comment",
        "sk: colon space",
        "q'uo\"tes",
        "{not: a map}",
        "[not, a, list]",
        "&anchor *alias",
        "!!python/object:os.system",
        "null",
        "true",
        "0x1F",
        " padded ",
        "multi\nline",
        "${NOT_AGAIN}",
        "#hash-first",
    ],
)
def test_an_env_value_is_text_never_yaml(monkeypatch, value):
    """`${VAR}` is substituted after parsing: the value is kept whole, whatever YAML would make of it."""
    monkeypatch.setenv("UP1_KEY", value)
    monkeypatch.setenv("NOT_AGAIN", "expanded")
    cfg = parse_config(GOOD)
    assert cfg.providers[0].accounts[0].api_key.reveal() == value
    quoted = parse_config(GOOD.replace("${UP1_KEY}", '"${UP1_KEY}"'))
    assert quoted.providers[0].accounts[0].api_key.reveal() == value


def test_env_in_flow_mappings_keys_and_typed_fields(monkeypatch):
    monkeypatch.setenv("KEY", "sk-a, b: {c}")
    monkeypatch.setenv("HDR", "X-Auth-Token")
    monkeypatch.setenv("RPM", "60")
    monkeypatch.setenv("ON", "false")
    monkeypatch.setenv("HOST", "127.0.0.1:9001")
    cfg = parse_config(
        "providers:\n  - {name: p, protocol: openai, base_url: http://${HOST}/v1, "
        "headers: {${HDR}: v-${RPM}},\n"
        "     accounts: [{api_key: ${KEY}, rpm: ${RPM}, enabled: ${ON}}]}\n"
    )
    p = cfg.providers[0]
    assert p.base_url == "http://127.0.0.1:9001/v1"
    assert {k: v.reveal() for k, v in p.headers.items()} == {"X-Auth-Token": "v-60"}
    assert p.accounts[0].api_key.reveal() == "sk-a, b: {c}"
    assert p.accounts[0].rpm == 60 and p.accounts[0].enabled is False
