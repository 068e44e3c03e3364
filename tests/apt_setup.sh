#!/usr/bin/env bash
# Installs one Debian package when a file it ships is missing and this user can (root, or sudo
# without a password); otherwise explains, and whatever needs it then fails with the same
# instruction (never skipped).  Usage: tests/apt_setup.sh PACKAGE FILE WHAT-NEEDS-IT
set -euo pipefail
PACKAGE=$1 FILE=$2 PURPOSE=$3
[ -e "$FILE" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "$PURPOSE needs $FILE: run 'sudo apt-get update && sudo apt-get install -y $PACKAGE'" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "$PURPOSE needs $FILE (Debian's $PACKAGE) and this system has no apt-get: install it there" >&2
    exit 0
fi
echo "installing $PACKAGE for $PURPOSE (apt-get)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$PACKAGE" >/dev/null
