"""`smolgate bench ...`: runs the benchmark scripts kept in the repository's bench/ directory.

Registered in cli.py with `app.add_typer(bench_app, name="bench")`. The scripts are not part of the installed
package: they need a source checkout (an editable install finds it next to src/; otherwise point SMOLGATE_REPO
at the checkout).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

bench_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmarks from the repository's bench/ directory (needs a source checkout).",
)


def find_bench_dir() -> Path | None:
    """bench/ of the source checkout: $SMOLGATE_REPO, the tree this file sits in (src layout), or the cwd."""
    candidates = []
    if env := os.environ.get("SMOLGATE_REPO"):
        candidates.append(Path(env))
    candidates += [Path(__file__).resolve().parents[2], Path.cwd()]
    for repo in candidates:
        if (repo / "bench" / "engine.py").is_file():
            return repo / "bench"
    return None


@bench_app.command(
    "engine",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def engine(ctx: typer.Context) -> None:
    """Engine vs transformers (vs llama.cpp with --llama-cpp): prefill/decode tok/s, TTFT, vision, RSS, streams.

    All options go to bench/engine.py (e.g. `--shape 256m --quick`, `--shape 2.2b --llama-cpp`; `--help` lists
    them).
    """
    bench = find_bench_dir()
    if bench is None:
        typer.echo(
            "smolgate bench engine needs the smolgate source checkout: bench/engine.py was not found next to the "
            "installed package or in the current directory. Run it from the repository root, or set "
            "SMOLGATE_REPO=/path/to/smolgate.",
            err=True,
        )
        raise typer.Exit(2)
    rc = subprocess.call([sys.executable, str(bench / "engine.py"), *ctx.args], cwd=bench.parent)
    raise typer.Exit(rc)
