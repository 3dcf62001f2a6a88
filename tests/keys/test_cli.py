"""`smolgate keys …` against the config's store: the secret printed once (alone on stdout), the table, show,
revoke and rotate seen by a running gateway, audit rows with actor "cli", and one-line errors."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from smolgate.cli import app
from smolgate.cli_keys import store_has_keys
from smolgate.config import load_config
from tests.keys.conftest import Db, keyed_config, start_gateway
from tests.keys.util import post, wait_for

runner = CliRunner()


def keys(*args: str):
    return runner.invoke(app, ["keys", *args], env={"COLUMNS": "250"})


def test_the_cli_manages_keys_a_running_gateway_uses(urls, tmp_path):
    cfg_path = tmp_path / "smolgate.yaml"
    cfg_path.write_text(keyed_config(urls, tmp_path))
    config = ["--config", str(cfg_path)]
    assert not store_has_keys(load_config(cfg_path))
    made = keys("create", "--name", "ci bot", "--models", "via-openai,via-gemini", "--rpm", "60", "--tpm",
                "10000", "--max-concurrency", "4", "--budget-usd", "12.5", "--period", "month", "--expires",
                "30d", *config)  # fmt: skip
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert re.fullmatch(r"sg-[A-Za-z0-9_-]{43}", secret)  # alone on stdout: KEY=$(smolgate keys create …)
    key_id = re.search(r"vk_[0-9a-f]{16}", made.stderr)[0]
    assert "shown only this once" in made.stderr and secret not in made.stderr
    assert store_has_keys(load_config(cfg_path))

    gw = start_gateway(cfg_path.read_text())
    try:
        assert post(gw.url, "openai", secret).status_code == 200
        listed = keys("list", *config)
        assert listed.exit_code == 0 and key_id in listed.stdout and "ci bot" in listed.stdout
        assert secret[:12] in listed.stdout and secret[12:] not in listed.stdout
        assert "rpm 60" in listed.stdout and "$12.50 per month" in listed.stdout and "active" in listed.stdout
        shown = keys("show", "ci bot", *config)
        assert shown.exit_code == 0 and key_id in shown.stdout and secret[12:] not in shown.stdout

        rotated = keys("rotate", key_id, *config)
        assert rotated.exit_code == 0, rotated.output
        new = rotated.stdout.strip()
        assert new != secret and new.startswith("sg-")
        wait_for(lambda: post(gw.url, "openai", secret).status_code == 401, "the old secret refused")
        assert post(gw.url, "openai", new).status_code == 200

        assert keys("revoke", "ci bot", *config).exit_code == 0
        wait_for(lambda: post(gw.url, "openai", new).status_code == 401, "the revoked key refused")
        assert "revoked" in keys("list", "--all", *config).stdout
        assert key_id not in keys("list", *config).stdout
    finally:
        gw.stop()
    log = Db(tmp_path).run(lambda s: s.audit_log(limit=100))
    assert sorted((a.action, a.actor, a.source) for a in log if a.target == key_id) == [
        ("key.create", "cli", "local"),
        ("key.revoke", "cli", "local"),
        ("key.rotate", "cli", "local"),
    ]


def test_cli_mistakes_are_one_line_and_exit_2(urls, tmp_path):
    cfg_path = tmp_path / "smolgate.yaml"
    cfg_path.write_text(keyed_config(urls, tmp_path))
    config = ["--config", str(cfg_path)]
    for args, words in (
        (["create", "--name", "x", "--period", "week"], "--period 'week' is not one of"),
        (["create", "--name", "x", "--rpm", "0"], "rpm must be a positive integer"),
        (["create", "--name", "x", "--expires", "soon"], "not a duration"),
        (["show", "nobody"], "no key 'nobody'"),
        (["revoke", "vk_0000"], "no key 'vk_0000'"),
    ):
        r = keys(*args, *config)
        assert r.exit_code == 2, (args, r.output)
        assert words in r.stderr and "Traceback" not in r.output
