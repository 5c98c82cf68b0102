#!/usr/bin/env bash
# The alert rules are checked and unit-tested with promtool: make sure it is here (Debian's
# prometheus package when missing and we are root).
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "promtool is missing and cannot be installed here (needs root and apt-get)" >&2
  exit 0
fi
echo "promtool is not installed: installing Debian's prometheus with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; }
