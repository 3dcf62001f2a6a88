#!/usr/bin/env bash
# Quick start: install if needed, then serve the embedded local engine on http://127.0.0.1:8000.
# Extra arguments go to `smolgate serve` (e.g. --port 9000, --config smolgate.yaml, --model DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh runtime
exec .venv/bin/smolgate serve "$@"
