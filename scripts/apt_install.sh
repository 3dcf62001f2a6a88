#!/bin/sh
# Install Debian packages: directly as root, through sudo otherwise (a plain user on a fresh machine). Callers
# run it only for what is missing, so a plain user with everything installed never needs root.
#   scripts/apt_install.sh PKG...
set -e
if [ "$(id -u)" = 0 ]; then
  run=""
elif command -v sudo >/dev/null 2>&1 && { [ -t 0 ] || sudo -n true 2>/dev/null; }; then
  run="sudo"  # a terminal to ask for the password in, or sudo without one
else
  echo "smolgate needs these Debian packages, and installing them needs root: $*" >&2
  echo "  install them as root (sudo apt-get install -y $*), then run this again" >&2
  exit 1
fi
if command -v fuser >/dev/null 2>&1 && fuser /var/lib/dpkg/lock-frontend >/dev/null 2>&1; then
  echo "waiting for another apt/dpkg to finish (to install: $*)" >&2
fi
$run apt-get update -qq
$run apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >/dev/null
