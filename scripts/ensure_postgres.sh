#!/bin/sh
# Make sure real PostgreSQL server binaries (initdb, postgres) exist for the store tests and bench/store.py (Debian
# package; root or sudo only to install it). Debian keeps them off PATH in /usr/lib/postgresql/<ver>/bin. The
# tests start their own private server (tests/postgres_server.py) on 127.0.0.1 — this only installs the binaries.
set -e
for dir in /usr/lib/postgresql/*/bin; do
  if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
    exit 0
  fi
done
if command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1; then
  exit 0
fi
sh "$(dirname "$0")/apt_install.sh" postgresql
