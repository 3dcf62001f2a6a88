#!/bin/sh
# Make sure Debian's chromium exists for the console's browser tests (tests/console): Playwright drives it through
# its executable path, since Playwright's own browser download is not reachable. Root or sudo only to install it.
set -e
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
sh "$(dirname "$0")/apt_install.sh" chromium
