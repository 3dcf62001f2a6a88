"""`smolgate accounts add/list/enable/disable/remove`, `smolgate audit` and `smolgate secrets rotate-master` as
real processes on a real SQLite store, with a gateway on the same data dir picking the changes up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from smolgate.config import load_config
from smolgate.crypto import ENV, MasterKey, MasterKeyError, key_path, read_key_file
from smolgate.server import runtime_accounts
from tests.control.upstreams import KeysUpstream
from tests.gateway_server import GatewayServer

KEY = "sk-cli-added-0123456789abcdef"
CFG_KEY = "sk-cfg-2222222222"


def smolgate(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != ENV}
    return subprocess.run(
        [sys.executable, "-m", "smolgate.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    up = KeysUpstream({CFG_KEY, KEY}).start()
    d = tmp_path_factory.mktemp("cliaccts")
    path = d / "smolgate.yaml"
    path.write_text(
        f"data_dir: {d}\nproviders:\n  - name: up\n    protocol: openai\n    base_url: {up.url}/v1\n"
        f"    accounts: [{{name: cfg, api_key: {CFG_KEY}, enabled: false}}]\n"
        "models:\n  - name: m\n    targets: [{provider: up, model: gpt-fake}]\n"
    )
    yield up, d, path
    up.stop()


def ask(url: str) -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    return client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).id


def test_cli_add_is_picked_up_by_a_running_gateway(setup, monkeypatch):
    up, _, path = setup
    monkeypatch.setattr(runtime_accounts, "REFRESH", 0.05)  # look at the store often (the default is 10 s)
    with GatewayServer(load_config(path)) as gw:
        with pytest.raises(openai.APIStatusError):  # the only config account is disabled: nothing to use
            ask(gw.url)
        out = smolgate(
            "accounts",
            "add",
            "-c",
            str(path),
            "--provider",
            "up",
            "--name",
            "cli-acct",
            "--rpm",
            "50",
            "--key-stdin",
            stdin=KEY + "\n",
        )
        assert out.returncode == 0, out.stderr
        assert KEY not in out.stdout + out.stderr
        deadline = time.monotonic() + 30
        while "cli-acct" not in {
            a["account"] for a in httpx.get(gw.url + "/admin/accounts").json()["accounts"]
        }:
            assert time.monotonic() < deadline, "the gateway never loaded the account"
            time.sleep(0.05)
        up.reset()
        ask(gw.url)
        assert up.keys_seen() == [KEY]
        out = smolgate("accounts", "disable", "cli-acct", "-c", str(path))
        assert out.returncode == 0 and "disabled up/cli-acct" in out.stderr
        deadline = time.monotonic() + 30
        while not any(
            a["account"] == "cli-acct" and a["state"] == "disabled"
            for a in httpx.get(gw.url + "/admin/accounts").json()["accounts"]
        ):
            assert time.monotonic() < deadline, "the gateway never saw the disable"
            time.sleep(0.05)
        assert smolgate("accounts", "enable", "cli-acct", "-c", str(path)).returncode == 0


def test_list_and_audit_never_show_the_key(setup):
    _, _, path = setup
    out = smolgate("accounts", "list", "-c", str(path))
    assert out.returncode == 0 and "cli-acct" in out.stdout and "50" in out.stdout
    assert KEY not in out.stdout
    out = smolgate("audit", "-c", str(path), "--since", "1h")
    assert out.returncode == 0, out.stderr
    assert "account.add" in out.stdout and "account.disable" in out.stdout and "cli" in out.stdout
    assert KEY not in out.stdout
    bad = smolgate("audit", "-c", str(path), "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr


def test_the_key_is_never_an_argument_and_a_missing_one_is_clear(setup):
    _, _, path = setup
    out = smolgate(
        "accounts", "add", "-c", str(path), "--provider", "up", "--name", "x", "--key-env", "NOPE_UNSET"
    )
    assert out.returncode == 2 and "NOPE_UNSET is not set" in out.stderr
    out = smolgate("accounts", "add", "-c", str(path), "--provider", "up", "--name", "x", stdin="")
    assert out.returncode == 2 and "--key-env" in out.stderr  # no terminal to prompt on
    out = smolgate(
        "accounts",
        "add",
        "-c",
        str(path),
        "--provider",
        "up",
        "--name",
        "cli-acct",
        "--key-env",
        "THE_KEY",
        env={"THE_KEY": "sk-other-123456"},
    )
    assert out.returncode == 2 and "already has an account named 'cli-acct'" in out.stderr


def test_rotation_keeps_the_account_working_and_retires_the_old_key(setup):
    up, d, path = setup
    old = read_key_file(key_path(d))
    out = smolgate("secrets", "rotate-master", "-c", str(path))
    assert out.returncode == 0, out.stderr
    new = read_key_file(key_path(d))
    assert new.id != old.id and f"{old.id} → {new.id}" in out.stderr
    assert not key_path(d).with_name("master.key.old").exists()
    assert (key_path(d).stat().st_mode & 0o777) == 0o600
    with GatewayServer(load_config(path)) as gw:  # a gateway started after the rotation
        up.reset()
        ask(gw.url)
        assert up.keys_seen() == [KEY]
    account_id, blob = _stored(d)
    with pytest.raises(MasterKeyError):
        old.decrypt(blob, account_id)
    assert new.decrypt(blob, account_id) == KEY
    out = smolgate("audit", "-c", str(path))
    assert "secrets.rotate_master" in out.stdout


def test_wrong_master_key_is_a_clear_error_not_a_trace(setup):
    _, _, path = setup
    _, other = MasterKey.generate()
    out = smolgate(
        "secrets", "rotate-master", "-c", str(path), "--new-key-env", "NEW", env={ENV: other, "NEW": other}
    )
    assert out.returncode == 2
    assert "was encrypted with master key" in out.stderr and "Traceback" not in out.stderr
    assert other not in out.stderr


def _stored(d: Path) -> tuple[str, bytes]:
    """The one stored account's id and ciphertext, read straight from the SQLite file."""
    import sqlite3

    with sqlite3.connect(d / "smolgate.db") as db:
        account_id, blob = db.execute("SELECT id, key_ciphertext FROM accounts").fetchone()
    return account_id, bytes(blob)


def test_a_gateway_with_the_wrong_master_key_skips_the_account_with_one_clear_line(
    setup, monkeypatch, caplog
):
    _, _, path = setup
    _, other = MasterKey.generate()
    monkeypatch.setenv(ENV, other)
    with caplog.at_level("ERROR", logger="smolgate"), GatewayServer(load_config(path)) as gw:
        accounts = httpx.get(gw.url + "/admin/accounts").json()
        assert "cli-acct" not in {a["account"] for a in accounts["accounts"]}  # not loaded, not guessed
        assert [a["name"] for a in accounts["stored"]] == ["cli-acct"]  # still stored, untouched
    lines = [r.getMessage() for r in caplog.records if "cli-acct" in r.getMessage()]
    assert len(lines) == 1 and "was encrypted with master key" in lines[0]
    assert not any(r.exc_info for r in caplog.records) and other not in caplog.text
