#!/usr/bin/env bash
# The whole test suite on a fresh machine: install if needed (incl. redis-server), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
