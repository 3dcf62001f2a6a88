#!/bin/sh
# Make sure a real redis-server binary exists for the pool tests (Debian package; we run as root).
# The tests start their own private instance on 127.0.0.1 — this only installs the binary.
set -e
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
apt-get update
apt-get install -y redis-server
