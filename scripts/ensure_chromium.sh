#!/bin/sh
# The browser tests use a system Chromium (Playwright cannot download its own here).
set -e
CHROMIUM="${FLOWDEPLOY_CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO=none; fi
  if [ "$SUDO" != none ]; then
    echo "Installing Chromium for the browser tests (apt-get install chromium)..."
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    [ -x "$CHROMIUM" ] && exit 0
  fi
fi
echo "The browser tests need Chromium at $CHROMIUM." >&2
echo "Install it (Debian/Ubuntu: sudo apt-get install chromium) or set FLOWDEPLOY_CHROMIUM to its path." >&2
exit 1
