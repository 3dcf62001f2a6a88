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
    with pytest.raises(ConfigError, match=r"provders|unknown"):
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


def test_env_reference_in_a_comment_is_ignored(monkeypatch):
    """The README's own config failed `smolgate check`: a `${VAR}` in a comment was looked up."""
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    cfg = parse_config("# `${NOT_SET_ANYWHERE}` is substituted\nproviders: []  # ${NOT_SET_ANYWHERE:-x}\n")
    assert cfg.providers == []
    with pytest.raises(ConfigError, match=r"<config>:2: environment variable NOT_SET_ANYWHERE"):
        parse_config("# ${NOT_SET_ANYWHERE}\nstate: ${NOT_SET_ANYWHERE}  # ${ALSO_NOT_SET}\n")


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return str(info.value)


def test_a_local_field_on_a_remote_provider_is_an_error_naming_its_line():
    msg = _error(
        "providers:\n  - name: o\n    protocol: openai\n    base_url: http://h/v1\n"
        "    timeouts: {total: 5}\n    quant: int8\n"
    )
    assert msg.startswith("<config>:6: providers[0].quant: unknown field `quant` for protocol `openai`")
    assert "protocol: local" in msg and "base_url" in msg  # which kind it belongs to; the valid fields
    msg = _error("providers:\n  - name: l\n    protocol: local\n    base_url: http://h\n")
    assert msg.startswith("<config>:4: providers[0].base_url: unknown field `base_url` for protocol `local`")


def test_a_misspelt_field_names_its_own_line_and_the_nearest_name():
    msg = _error(
        "providers:\n  - name: o\n    protocol: openai\n    base_url: http://h/v1\n"
        "    timeouts:\n      connect: 3\n      frist_byte: 9\n"
    )
    assert msg.startswith("<config>:7: providers[0].timeouts.frist_byte: unknown field `frist_byte`")
    assert "did you mean `first_byte`?" in msg and "connect, first_byte, idle, total" in msg
    assert "did you mean `max_body_bytes`?" in _error("server:\n  keepalive_timeout: 3\n  max_body: 1\n")
    assert _error("server:\n  keepalive_timeout: 3\n  max_body: 1\n").startswith(
        "<config>:3: server.max_body"
    )


def test_a_wrong_value_lists_the_valid_ones_and_the_nearest():
    msg = _error("providers:\n  - name: o\n    protocol: antropic\n    base_url: http://h\n")
    assert msg.startswith("<config>:3: providers[0].protocol:")
    assert "did you mean `anthropic`?" in msg
    assert "valid values: openai, openai-responses, anthropic, gemini, ollama, local" in msg
    msg = _error("providers:\n  - {name: o, protocol: openai, base_url: http://h, strategy: round-robin}\n")
    assert "did you mean `round_robin`?" in msg
    msg = _error("providers:\n  - name: l\n    protocol: local\n    dtype: fp16\n")
    assert (
        msg.startswith("<config>:4: providers[0].dtype:") and "valid values: auto, float32, bfloat16" in msg
    )


def test_a_pasted_key_as_a_field_name_is_not_echoed():
    msg = _error(
        "providers:\n  - name: o\n    protocol: openai\n    base_url: http://h\n    sk-live-abc123: 1\n"
    )
    assert "sk-live-abc123" not in msg and "unknown field (name not shown)" in msg and "<config>:5" not in msg


def test_local_and_remote_providers_decode_to_their_own_types():
    from smolgate.config import LocalProviderConfig, ProviderConfig

    cfg = parse_config(
        "providers:\n  - {name: l, protocol: local, quant: int4, dtype: float32, compile: true}\n"
        "  - {name: o, protocol: ollama, base_url: http://h, transport: aiohttp}\n"
    )
    local, remote = cfg.providers
    assert isinstance(local, LocalProviderConfig) and (local.quant, local.dtype, local.compile) == (
        "int4",
        "float32",
        True,
    )
    assert (
        isinstance(remote, ProviderConfig) and remote.transport == "aiohttp" and remote.protocol == "ollama"
    )


def _structs(tp: object, seen: dict[str, type]) -> dict[str, type]:
    """Every config struct reachable from `tp`, by class name."""
    import typing

    import msgspec

    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if tp.__name__ in seen:
            return seen
        seen[tp.__name__] = tp
        for base in tp.__mro__[1:]:
            if isinstance(base, type) and issubclass(base, msgspec.Struct) and base is not msgspec.Struct:
                _structs(base, seen)
        for hint in typing.get_type_hints(tp).values():
            _structs(hint, seen)
    for arg in typing.get_args(tp):
        _structs(arg, seen)
    return seen


def test_docs_config_md_describes_every_field():
    """docs/config.md has a section per config struct (marked `<!-- Name -->`) naming each of its fields."""
    from pathlib import Path

    from smolgate.config import Config

    doc = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    structs = _structs(Config, {})
    assert {"Config", "ProviderConfig", "LocalProviderConfig", "ServerConfig", "TimeoutConfig"} <= set(
        structs
    )
    for name, struct in structs.items():
        if name == "Base":
            continue
        marker = f"<!-- {name} -->"
        assert marker in doc, f"docs/config.md has no section for {name}"
        section = doc.split(marker, 1)[1].split("<!-- ", 1)[0]
        bases = [b for b in struct.__mro__[1:] if b.__name__ in structs and b.__name__ != "Base"]
        inherited = {f for b in bases for f in b.__struct_fields__}
        own = [f for f in struct.__struct_fields__ if f not in inherited or f == "protocol"]
        for field in own:
            assert f"| `{field}` |" in section, f"docs/config.md: {name}.{field} is not described"


def test_the_example_config_passes_check(monkeypatch):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "smolgate.yaml"
    names = [
        "OPENAI_KEY_A",
        "OPENAI_KEY_B",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "SMOLGATE_KEY",
        "SMOLGATE_ADMIN_KEY",
    ]
    env = {**__import__("os").environ, **{n: f"sk-example-{n.lower()}" for n in names}}
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "check", "--config", str(example)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "7 providers" in out.stdout + out.stderr and "sk-example" not in out.stdout + out.stderr
