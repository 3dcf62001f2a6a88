#!/usr/bin/env bash
# Install the JavaScript frameworks the framework tests drive (the Vercel AI SDK and its provider packages, pinned
# in tests/frameworks/js/package.json + package-lock.json) into tests/frameworks/js/node_modules.
# Idempotent: a stamp of the lock file skips npm when nothing changed. Needs node + npm (Debian: nodejs npm).
#   scripts/ensure_js_frameworks.sh
set -euo pipefail
cd "$(dirname "$0")/../tests/frameworks/js"
if ! command -v npm >/dev/null 2>&1; then
  sh ../../../scripts/apt_install.sh nodejs npm
fi
stamp="node_modules/.stamp-$(sha1sum package-lock.json | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  rm -f node_modules/.stamp-*
  touch "$stamp"
fi
