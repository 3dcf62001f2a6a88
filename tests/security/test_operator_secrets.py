"""The operator's side: no credential is ever printed by `smolgate check`, a config error, or a repr.

Credentials come from the environment (with awkward characters) and as literals, in every place a config
can hold one: account keys, provider header values, a base_url's user:password and ?query, client keys, the
admin key and the Redis password of `state`. Configs that fail (a YAML error on a key's own line, schema
errors that quote a value or a field name, nesting too deep) are explained by field and line without them.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from smolgate.config import ConfigError, parse_config

ENV = {
    "SG_UP1": "sk-env-one-1111 #tail",
    "SG_UP2": 'sk-env: two-2222 "q"',
    "SG_ORG": "org-env-3333'x",
    "SG_CLIENT": "ck-env-#-4444",
    "SG_REDIS": "redis-env-5555",
}
LITERALS = [
    "sk-literal-6666",
    "hdr-literal-7777",
    "basic-pw-8888",
    "qs-literal-9999",
    "client-literal-4711",
    "admin-literal-1212",
    "sk-quoted-literal-1313",
]
SECRETS = [*ENV.values(), *LITERALS]

CONFIG = """\
providers:
  - name: up1
    protocol: openai
    base_url: https://bob:basic-pw-8888@api.example.com/v1?token=qs-literal-9999
    accounts:
      - api_key: ${SG_UP1}
      - {api_key: ${SG_UP2}, name: second}
      - api_key: sk-literal-6666
    headers: {x-extra-auth: hdr-literal-7777, OpenAI-Organization: "${SG_ORG}"}
  - name: up2
    protocol: anthropic
    base_url: http://127.0.0.1:9002
    accounts: [{api_key: "sk-quoted-literal-1313"}]
models:
  - {name: fast, targets: [{provider: up1, model: gpt-4o-mini}]}
keys:
  - key: ${SG_CLIENT}
  - {key: client-literal-4711}
server:
  admin_key: admin-literal-1212
state: redis://:${SG_REDIS}@127.0.0.1:6379/0
"""

# Broken variants: (what is wrong, replace this, with that, the line the message must name)
BROKEN = {
    "yaml error on the key's line": (
        "      - api_key: sk-literal-6666",
        "      - api_key: sk-literal-6666: x",
        8,
    ),
    "unterminated quote on the key's line": (
        '    accounts: [{api_key: "sk-quoted-literal-1313"}]',
        '    accounts: [{api_key: "sk-quoted-literal-1313}]',
        None,
    ),
    "key pasted into an enum field": ("    protocol: openai", "    protocol: sk-literal-6666", 3),
    "env key pasted into an enum field": ("    protocol: openai", "    protocol: ${SG_UP1}", 3),
    "key pasted as a field name": ("      - api_key: sk-literal-6666", "      - {sk-literal-6666: 1}", 8),
    "key where a number goes": (
        "      - api_key: sk-literal-6666",
        "      - {api_key: sk-literal-6666, weight: sk-literal-6666}",
        8,
    ),
    "a list where the key goes": (
        "      - api_key: sk-literal-6666",
        "      - api_key: [sk-literal-6666]",
        8,
    ),
    "state as a list": ("state: redis://", "state: [redis://", 21),
    "dangling reference": ("{provider: up1,", "{provider: sk-literal-6666,", None),
    "nested too deeply": ("models:\n", "x: " + "[" * 3000 + "]" * 3000 + "\nmodels:\n", None),
}


def broken(case: str) -> str:
    old, new, _ = BROKEN[case]
    assert old in CONFIG
    text = CONFIG.replace(old, new, 1)
    if case == "state as a list":
        text = text.replace("6379/0\n", "6379/0]\n")
    return text


@pytest.fixture
def env(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


def run_check(tmp_path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "smolgate.yaml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **ENV, "COLUMNS": "200"},
    )


def leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text or s.split(" ")[0] in text or s.split("-")[-1] in text]


def test_check_explains_a_config_full_of_keys_without_printing_one(tmp_path):
    out = run_check(tmp_path, CONFIG)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert leaked(text) == []
    assert "redis://***@127.0.0.1:6379/0" in text  # where the state lives, without its password
    assert "https://***@api.example.com/v1?token=***" in text
    assert "up1/gpt-4o-mini" in text


@pytest.mark.parametrize(
    "case",
    [
        "yaml error on the key's line",
        "key pasted into an enum field",
        "key pasted as a field name",
        "state as a list",
        "nested too deeply",
    ],
)
def test_check_explains_a_broken_config_without_printing_a_key(tmp_path, case):
    out = run_check(tmp_path, broken(case))
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert leaked(text) == [] and "Traceback" not in text
    line = BROKEN[case][2]
    assert "config error" in text and (line is None or f"{line}" in text)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_config_errors_name_the_place_never_the_value(env, case):
    with pytest.raises(ConfigError) as info:
        parse_config(broken(case), "smolgate.yaml")
    msg = str(info.value)
    assert leaked(msg) == [], msg
    line = BROKEN[case][2]
    if line is not None:
        assert f"smolgate.yaml:{line}" in msg or f"line {line}," in msg, msg


def test_repr_and_str_of_a_config_show_no_secret(env):
    cfg = parse_config(CONFIG)
    shown = " ".join(
        [
            repr(cfg),
            str(cfg),
            repr(cfg.providers),
            repr(cfg.server),
            repr(cfg.keys),
            cfg.state_display,
            f"{cfg.providers[0].accounts[0].api_key}",
            "%s" % cfg.server.admin_key,  # noqa: UP031 - %-formatting is one of the ways under test
        ]
    )
    assert leaked(shown) == [], shown
    assert "***" in shown


def test_every_credential_is_known_to_the_redactor(env):
    """`secret_values` feeds the log and error-message Redactor: it must list every credential, whole."""
    values = set(parse_config(CONFIG).secret_values())
    assert set(SECRETS) <= values, set(SECRETS) - values
