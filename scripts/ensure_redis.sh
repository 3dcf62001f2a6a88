#!/bin/sh
# Make sure a real redis-server binary exists for the pool tests (Debian package; root or sudo only to install it).
# The tests start their own private instance on 127.0.0.1 — this only installs the binary.
set -e
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
sh "$(dirname "$0")/apt_install.sh" redis-server
