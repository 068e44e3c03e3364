#!/usr/bin/env bash
# Debian's Chromium for tests/test_browser.py (Playwright drives it; nothing downloads a browser).
# Installs it when missing and this user can (root, or sudo without a password); otherwise
# explains, and the browser tests then fail with the same instructions (never skipped).
set -euo pipefail
CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "browser tests need $CHROMIUM: run 'sudo apt-get update && sudo apt-get install -y chromium'" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "browser tests need $CHROMIUM and this system has no apt-get: install Chromium there" >&2
    exit 0
fi
echo "installing chromium for the browser tests (apt-get)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
