#!/bin/sh
# Install Debian packages: directly as root, through sudo otherwise (a plain user on a fresh machine).
#   scripts/apt_install.sh PKG...
set -e
if [ "$(id -u)" = 0 ]; then run=""; elif command -v sudo >/dev/null 2>&1; then run="sudo"; else
  echo "need root or sudo to install: $*" >&2; exit 1
fi
$run apt-get update -qq
$run apt-get install -y -qq "$@" >/dev/null
