"""One gateway and one set of fake upstreams for every framework test (they answer instantly)."""

from __future__ import annotations

import os

import pytest

from tests.frameworks.stack import Stack, start, stop

# No framework may reach out for telemetry, price lists or tracing during the tests.
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LANGSMITH_TRACING", "false")


@pytest.fixture(scope="session")
def stack() -> Stack:  # type: ignore[misc]
    s = start()
    yield s
    stop(s)
