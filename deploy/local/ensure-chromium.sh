#!/usr/bin/env bash
# The requester's status page is tested in a real headless browser: make sure Chromium is here.
# Installs Debian's chromium with apt-get when missing and we are root; otherwise says why not
# (the browser test then reports itself skipped with the same reason).
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || [ -n "${CHROMIUM_PATH:-}" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Chromium is missing and cannot be installed here (needs root and apt-get)" >&2
  exit 0
fi
echo "Chromium is not installed: installing it with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
