#!/usr/bin/env bash
# The status page and the console are tested in a real headless browser: make sure Chromium
# is here (CHROMIUM_PATH names another one).
set -euo pipefail
[ -n "${CHROMIUM_PATH:-}" ] && exit 0
exec bash "$(dirname "$0")/ensure-package.sh" chromium chromium
