"""The `smolgate` command line: serve, check, accounts, secrets, audit, chat, pull.

A mistake on the command line or in the config is one line on stderr and exit code 2, never a traceback; options
are checked before anything slow starts (a model load, a bind).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from pathlib import Path
from typing import Literal, cast, get_args

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from . import __version__
from .bench_cli import bench_app
from .cli_accounts import accounts_app
from .cli_audit import audit_cmd
from .cli_checks import (
    LOG_LEVELS,
    bind_or_exit,
    engine_missing,
    fail,
    one_of,
    require_files,
    resolve_default_model,
)
from .cli_keys import keys_app, store_has_keys
from .cli_secrets import secrets_app
from .cli_tune import tune_cmd
from .cli_usage import usage_app
from .config import (
    Config,
    ConfigError,
    LocalProviderConfig,
    ModelAlias,
    Quant,
    Target,
    load_config,
)
from .secret import redact_url

# No local variables in tracebacks: they would print config text and keys.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="smolgate — one API endpoint, any AI model, with a vision-language model built in.",
)
console = Console(stderr=True)

app.add_typer(bench_app, name="bench")
app.add_typer(accounts_app, name="accounts")
app.add_typer(secrets_app, name="secrets")
app.add_typer(usage_app, name="usage")
app.add_typer(keys_app, name="keys")

DTYPES = ("auto", "bfloat16", "float32")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"smolgate {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """smolgate — one API endpoint, any AI model, with a vision-language model built in."""


def _setup_logging(level: str, fmt: str = "text") -> list[logging.Handler]:
    """Log to stderr off the event loop (observability/logs.py): text through rich, or JSON lines."""
    from .observability.logs import setup

    rich = RichHandler(console=console, show_path=False, rich_tracebacks=False)
    rich.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
    return setup(level, fmt, rich, sys.stderr)


# --compile's values -> the local provider's `compile:`
COMPILE_MODES: dict[str, bool | Literal["background"]] = {
    "background": "background",
    "start": True,
    "off": False,
}


def embedded_config(
    model: str | None,
    quant: Quant | None = "auto",
    compile: bool | Literal["background"] = "background",
    dtype: str = "auto",
) -> Config:
    """No config file: serve the local engine under its own name, `local/<id>` and `default`."""
    provider = LocalProviderConfig(
        name="local",
        model=model,
        quant=quant,
        compile=compile,
        dtype=cast('Literal["auto", "float32", "bfloat16"]', dtype),
    )
    return Config(
        providers=[provider],
        models=[ModelAlias(name="default", targets=[Target(provider="local", model="default")])],
    )


def _load(config: Path) -> Config:
    try:
        return load_config(config)
    except ConfigError as exc:  # its message names field and line, never a credential (config.py)
        fail(f"config error: {exc}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML config; none → embedded local engine"
    ),
    host: str = typer.Option("127.0.0.1", help="bind address"),
    port: int = typer.Option(8000, help="bind port"),
    model: str | None = typer.Option(None, help="local model: dir, HF repo id or .gguf (embedded mode)"),
    quant: str = typer.Option("auto", help="local engine quantization: auto|none|int8|int8-dynamic|int4"),
    dtype: str = typer.Option("auto", help="local engine compute dtype: auto|bfloat16|float32"),
    compile: str = typer.Option(
        "background",
        "--compile",
        help="local engine: torch.compile the decode step, background (serve at once, switch when compiled) | "
        "start (before ready) | off",
    ),
    ssl_certfile: Path | None = typer.Option(
        None, "--ssl-certfile", help="serve HTTPS with this certificate"
    ),
    ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="the certificate's private key"),
    log_level: str = typer.Option("info", help="|".join(LOG_LEVELS)),
    log_format: str = typer.Option("text", help="text|json (one JSON object per line, with request ids)"),
) -> None:
    """Run the gateway."""
    one_of("--log-level", log_level.lower(), LOG_LEVELS)
    one_of("--log-format", log_format, ("text", "json"))
    one_of("--dtype", dtype, DTYPES)
    one_of("--quant", quant, get_args(Quant))
    one_of("--compile", compile, tuple(COMPILE_MODES))
    if config is not None and (model or quant != "auto" or compile != "background" or dtype != "auto"):
        fail(
            "--model, --quant, --dtype and --compile are for the embedded engine; with --config set them on "
            "the `protocol: local` provider"
        )
    if (ssl_certfile is None) != (ssl_keyfile is None):
        fail("--ssl-certfile and --ssl-keyfile go together")
    require_files(ssl_certfile, ssl_keyfile)
    log_writers = _setup_logging(log_level, log_format)
    cfg = _load(config) if config is not None else None
    if not (cfg.keys if cfg else []) and not _is_loopback(host) and not store_has_keys(cfg or Config()):
        fail(
            f"refusing to bind {host}: no client keys are configured, so the gateway would be open to the "
            "network. Add `keys:` to the config, create a key (`smolgate keys create`) or bind to 127.0.0.1."
        )
    sock = bind_or_exit(host, port)  # before a model loads: a taken port fails now, not after "ready"
    local = cfg is None or any(isinstance(p, LocalProviderConfig) for p in cfg.providers)
    if local and (missing := engine_missing()):
        what = (
            "`smolgate serve` without --config serves"
            if cfg is None
            else "a `protocol: local` provider needs"
        )
        fail(
            f"{what} the embedded engine, which is not installed ({missing} is missing): "
            "pip install 'smolgate[engine]'"
            + (" — or pass --config with remote providers" if cfg is None else "")
        )
    if cfg is None:
        cfg = embedded_config(
            resolve_default_model(model), cast("Quant", quant), COMPILE_MODES[compile], dtype
        )
    for p in cfg.providers:  # each local model is checked (and the default fetched) before anything loads
        if isinstance(p, LocalProviderConfig):
            p.model = resolve_default_model(p.model)

    from .secret import RedactingFilter
    from .server.app import Gateway
    from .server.auth import admin_key
    from .server.serving import Server, uvicorn_config

    admin = admin_key(cfg)
    secret_values = cfg.secret_values() + ([admin.reveal()] if admin else [])
    redact = RedactingFilter(secret_values)
    for handler in log_writers:  # uvicorn's loggers propagate to the root's (log_config=None)
        handler.addFilter(redact)
    try:
        app = Gateway(cfg)  # builds the providers: a header or base_url HTTP cannot carry is refused here
    except ConfigError as exc:
        fail(f"config error: {exc}")
    if config is not None:  # SIGHUP and POST /admin/reload re-read this file
        app.runtime.config_path = str(config)
        app.runtime.reload_on_sighup = True
    try:
        server_config = uvicorn_config(
            app,
            host,
            port,
            ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
            ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        )
        server_config.load()  # reads the certificate now, so a bad one is a clear message
    except (OSError, ValueError) as exc:  # unreadable certificate or key: one line, no trace
        fail(f"cannot serve: {exc}")
    server = Server(server_config, app)
    server.run(sockets=[sock])
    if not server.started:  # startup failed (logged as one line by the gateway): not a clean exit
        raise typer.Exit(1)


@app.command()
def check(config: Path = typer.Option(..., "--config", "-c")) -> None:
    """Validate a config file and explain what it routes where."""
    cfg = _load(config)
    console.print(
        f"[green]ok[/green]: {len(cfg.providers)} providers, {len(cfg.models)} model aliases, "
        f"{len(cfg.keys)} client keys, state: {escape(cfg.state_display)}"
    )
    t = Table("provider", "protocol", "base_url", "accounts", "strategy")
    for p in cfg.providers:
        if isinstance(p, LocalProviderConfig):
            base_url = f"(embedded: {p.model or 'default model'})"
        else:
            base_url = redact_url(p.base_url, query=True) or "-"  # it may hold user:password@ or ?key=
        t.add_row(p.name, p.protocol, base_url, str(len(p.accounts)), p.strategy)
    console.print(t)
    from .errors import ErrorKind, GatewayError
    from .policies.offline import OfflineFallback
    from .routing import Router

    router, offline, down = Router(cfg), OfflineFallback(cfg), GatewayError(ErrorKind.UPSTREAM, "")
    t = Table("model", "tries in order")
    for m in cfg.models:
        routes = router.resolve(m.name)
        fb = offline.route(m.name, down, routes)  # when every route failed upstream-side
        tail = f" → offline: {fb.provider}" if fb is not None else ""
        t.add_row(m.name, " → ".join(f"{r.provider}/{r.model}" for r in routes) + tail)
    console.print(t)
    if not cfg.keys:
        console.print(
            "[yellow]note[/yellow]: no client keys in the config — unless the store holds virtual keys "
            "(`smolgate keys create`), `serve` will only bind to loopback"
        )


@app.command()
def chat(
    question: str = typer.Argument(..., help="what to ask"),
    image: list[Path] = typer.Option([], "--image", help="image file(s)"),
    video: list[Path] = typer.Option([], "--video", help="video file(s)"),
    model: str | None = typer.Option(None, help="local model: dir, HF repo id or .gguf"),
    max_tokens: int = typer.Option(512),
    temperature: float = typer.Option(0.0),
    quant: str | None = typer.Option(None, help="quantization: none|int8|int8-dynamic|int4"),
    dtype: str = typer.Option("float32", help="compute dtype: float32|bfloat16"),
) -> None:
    """Ask the local engine one question, streaming the answer."""
    if quant is not None:
        one_of("--quant", quant, get_args(Quant))
    one_of("--dtype", dtype, DTYPES)
    require_files(*image, *video)
    if missing := engine_missing():
        fail(
            f"`smolgate chat` runs the embedded engine, which is not installed ({missing} is missing): "
            "pip install 'smolgate[engine]'"
        )
    _setup_logging("warning")
    source = resolve_default_model(model)

    from PIL import Image as PILImage

    from .engine.engine import ChatMessage, Engine, GenerationParams, ImagePart, TextPart, VideoPart
    from .providers.local import resolve_model

    try:
        engine = Engine.load(
            resolve_model(source), quant=None if quant in (None, "none") else quant, dtype=dtype
        )
        parts: list[ImagePart | VideoPart | TextPart] = [ImagePart(PILImage.open(p)) for p in image]
        parts += [VideoPart(p.read_bytes()) for p in video]
    except (OSError, ValueError) as exc:  # unknown model (ModelNotFound), unreadable image: one line
        fail(str(exc))
    parts.append(TextPart(question))
    try:
        for chunk in engine.stream(
            [ChatMessage("user", parts)], GenerationParams(max_tokens=max_tokens, temperature=temperature)
        ):
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
    except ValueError as exc:
        console.print(f"\n[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
    sys.stdout.write("\n")


@app.command()
def pull(repo_id: str = typer.Argument(..., help="e.g. HuggingFaceTB/SmolVLM2-500M-Video-Instruct")) -> None:
    """Download a model from the Hugging Face hub into the HF cache (with progress)."""
    if missing := engine_missing():
        fail(
            f"`smolgate pull` is part of the embedded engine, which is not installed ({missing} is missing): "
            "pip install 'smolgate[engine]'"
        )
    from .engine.weights import download

    try:
        path = download(repo_id)
    except Exception as exc:  # offline, unknown repo, …: one clear line, no trace
        console.print(f"[red]pull failed:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    console.print(f"[green]ready[/green]: {path}")


app.command(name="audit")(audit_cmd)
app.command(name="tune")(tune_cmd)


def main() -> None:  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
