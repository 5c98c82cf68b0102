#!/usr/bin/env bash
# The Kubernetes manifests are built with `kubectl kustomize` in the tests: make sure kubectl
# is here (Debian's package when missing and we are root).
set -euo pipefail

if command -v kubectl >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "kubectl is missing and cannot be installed here (needs root and apt-get)" >&2
  exit 0
fi
echo "kubectl is not installed: installing it with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq kubectl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq kubectl >/dev/null; }
