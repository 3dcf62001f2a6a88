#!/usr/bin/env bash
# The whole test suite on a fresh machine: install if needed (incl. redis-server), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
# Two worker processes (pytest-xdist), each test file on one worker (its module fixtures — servers, models — are
# built once): most tests wait on sockets and subprocesses, so two workers finish in about half the time on
# 2 cores. SMOLGATE_TEST_WORKERS=0 runs everything in this process (for a debugger).
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${SMOLGATE_TEST_WORKERS:-2}" --dist loadfile "$@"
