"""The docs name modules that exist: a renamed or moved file must not leave docs/architecture.md pointing at nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "smolgate"


def _modules_named(doc: str) -> set[str]:
    # `server/app.py`, `engine.py`, `server/asgi.send_stream` → the file part of each backticked module reference
    names = set(re.findall(r"`([\w/]+\.py)", doc))
    return names


def test_every_module_the_architecture_doc_names_exists() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    files = {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")}
    named = _modules_named(doc)
    assert len(named) > 20  # the walk-throughs name the files they pass through
    missing = sorted(n for n in named if not any(f == n or f.endswith("/" + n) for f in files))
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_each_walkthrough_passes_through_at_most_eight_files() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    walks = re.split(r"^### ", doc, flags=re.M)[1:3]
    assert len(walks) == 2
    for walk in walks:
        steps = re.findall(r"^\d+\. `([\w/]+\.py)`", walk, flags=re.M)
        assert 1 < len(steps) <= 8, steps
