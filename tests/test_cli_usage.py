"""`smolgate usage` against a real store (SQLite, PostgreSQL) holding known rows: the table, CSV, windows and groupings, and one
clear line (exit 2) for a bad option."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smolgate.cli import app
from tests.usage_rows import HOUR, SINCE, filled_store

runner = CliRunner()
__all__ = ["filled_store"]  # the store fixture, of each backend


@pytest.fixture(scope="module")
def config(filled_store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("usage-config") / "smolgate.yaml"
    path.write_text(f"store: '{filled_store}'\n")
    return path


def usage(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, ["usage", *args], env={"COLUMNS": "200"})
    return r.exit_code, r.stdout, r.stderr


def rows_of(text: str) -> dict[str, dict[str, str]]:
    return {r["group"]: r for r in csv.DictReader(io.StringIO(text))}


def test_csv_by_key_has_the_exact_sums(config: Path):
    code, out, _ = usage("--since", str(SINCE), "--by", "key", "--csv", "--config", str(config))
    assert code == 0, out
    rows = rows_of(out)
    assert list(rows) == ["vk_alice", "vk_bob", "-"]  # costliest first; "-": requests without a key
    alice = rows["vk_alice"]
    assert (alice["requests"], alice["errors"], alice["input_tokens"], alice["cached_tokens"]) == (
        "2",
        "0",
        "3000",
        "400",
    )
    assert (alice["output_tokens"], alice["reasoning_tokens"], alice["cost_usd"]) == ("500", "50", "0.030000")
    assert (alice["avg_latency_ms"], alice["avg_ttft_ms"]) == ("200.0", "20.0")  # ttft over the one stream
    bob = rows["vk_bob"]
    assert (bob["errors"], bob["cache_write_tokens"], bob["cost_usd"]) == ("1", "100", "0.005000")
    assert rows["-"]["avg_ttft_ms"] == ""  # no stream: no time to first token


def test_csv_groups_by_account_model_and_window(config: Path):
    _, out, _ = usage("--since", str(SINCE), "--by", "account", "--csv", "--config", str(config))
    assert set(rows_of(out)) == {"oai/team-a", "oai/team-b", "ant/main", "local/engine"}
    _, out, _ = usage("--since", str(SINCE), "--by", "model", "--csv", "--config", str(config))
    assert rows_of(out)["gpt-4o"]["requests"] == "2"
    # only the second hour: Bob's and the local request
    _, out, _ = usage("--since", str(HOUR + 3600), "--csv", "--config", str(config))
    (total,) = rows_of(out).values()
    assert (total["group"], total["requests"], total["errors"], total["cost_usd"]) == (
        "all",
        "2",
        "1",
        "0.005000",
    )
    # an ISO 8601 window that ends before the first row: nothing
    code, out, _ = usage(
        "--since", "2020-01-01", "--until", "2020-01-02T00:00:00Z", "--csv", "--config", str(config)
    )
    assert code == 0 and rows_of(out)["all"]["requests"] == "0"


def test_the_table_shows_groups_and_a_total(config: Path):
    code, out, _ = usage("--since", "7d", "--by", "alias", "--config", str(config))
    assert code == 0, out
    cells = {c[0]: c[1:] for line in out.splitlines() if len(c := line.split()) == 10}
    assert list(cells) == ["fast", "claude", "default", "total"]  # costliest first, then the total
    # requests, error %, input, cached, output, reasoning, cost, avg latency, avg ttft
    assert cells["total"] == ["4", "25.0", "3,510", "400", "610", "50", "0.0350", "400", "35"]
    assert cells["claude"][:2] == ["1", "100.0"]  # its only request failed
    assert cells["default"][-1] == "-"  # no stream: no time to first token


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "is not a time"),
        (["--since", "24x"], "is not a time"),
        (["--by", "colour"], "cannot group by 'colour'"),
        (["--since", "1h", "--until", "2h"], "'until' must be later than 'since'"),
    ],
)
def test_bad_options_are_one_line(config: Path, args: list[str], message: str):
    code, _, err = usage(*args, "--config", str(config))
    assert code == 2
    assert message in err and "Traceback" not in err


def test_without_a_config_it_reads_the_data_dirs_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SMOLGATE_HOME", str(tmp_path))
    code, out, _ = usage("--csv")
    assert code == 0, out
    assert rows_of(out)["all"]["requests"] == "0"
    assert (tmp_path / "smolgate.db").exists()


def test_an_unreachable_store_is_one_line_without_its_password(tmp_path: Path):
    path = tmp_path / "smolgate.yaml"
    path.write_text("store: postgresql://smolgate:hunter2-canary@127.0.0.1:1/ledger\n")
    code, out, err = usage("--config", str(path))
    assert code == 1
    assert "cannot read the usage ledger" in err and "Traceback" not in err
    assert "hunter2-canary" not in out + err


def test_a_clients_model_name_is_shown_as_text_not_markup_or_escapes(tmp_path: Path):
    """The alias is whatever the client sent: rich markup in it is shown literally (not a crash or a link) and
    control characters are escaped (not sent to the terminal)."""
    import asyncio
    import time

    from smolgate.config import parse_config
    from smolgate.store.open import open_store
    from smolgate.store.records import UsageRow

    hostile = "[/x][link=https://evil.example]x\x1b[31mred"

    async def fill() -> None:
        store = await open_store(parse_config(f"data_dir: {tmp_path}\n"))
        row = UsageRow(
            ts=time.time() - 60, request_id="r1", key_id=None, client_protocol="openai", alias=hostile,
            provider="up", account="a", upstream_model="m", upstream_protocol="openai",
        )  # fmt: skip
        await store.add_usage([row])
        await store.close()

    asyncio.run(fill())
    cfg = tmp_path / "smolgate.yaml"
    cfg.write_text(f"data_dir: {tmp_path}\n")
    code, out, err = usage("--since", "1h", "--by", "alias", "--config", str(cfg))
    assert code == 0, out + err
    assert "\x1b" not in out and "[/x][link=https://evil.example]x\\x1b[31mred" in out.replace("\n", "")
