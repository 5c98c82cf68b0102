#!/usr/bin/env bash
# `ensure-package.sh COMMAND PACKAGE`: make sure COMMAND is here for the tests that need it
# (Chromium for the pages, kubectl for the manifests, promtool for the alert rules).
# Installs Debian's PACKAGE with apt-get when missing and we are root; otherwise says why
# not, and the test that needs it says so too.
set -euo pipefail
command_name="$1" package="$2"

if command -v "$command_name" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "$command_name is missing and cannot be installed here (needs root and apt-get)" >&2
  exit 0
fi
echo "$command_name is not installed: installing Debian's $package with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "$package" >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq "$package" >/dev/null; }
