#!/usr/bin/env bash
# Install the real coding-agent CLIs the agent tests drive (npm packages) into .agents/ in the repo.
# Idempotent: a stamp of the package list skips npm when nothing changed. Needs node + npm (Debian: nodejs npm).
#   scripts/ensure_agents.sh          install (or verify) all agents
# Binaries then live in .agents/node_modules/.bin/ (claude, codex, gemini, opencode).
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(
  "@anthropic-ai/claude-code@2.1"
  "@openai/codex@0.171"
  "@google/gemini-cli@0.61"
  "opencode-ai@1.18"
)
if ! command -v npm >/dev/null 2>&1; then
  sh scripts/apt_install.sh nodejs npm
fi
mkdir -p .agents
stamp=".agents/.stamp-$(printf '%s\n' "${PKGS[@]}" | sha1sum | cut -c1-12)"
missing=0
for bin in claude codex gemini opencode; do [ -x ".agents/node_modules/.bin/$bin" ] || missing=1; done
if [ ! -f "$stamp" ] || [ "$missing" = 1 ]; then
  [ -f .agents/package.json ] || echo '{"name":"smolgate-agents","private":true}' > .agents/package.json
  (cd .agents && npm install --no-audit --no-fund --loglevel=error "${PKGS[@]}")
  rm -f .agents/.stamp-*
  touch "$stamp"
fi
