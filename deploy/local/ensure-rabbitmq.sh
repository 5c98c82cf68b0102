#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers on this machine: start it, or install it first.
set -euo pipefail

ping_broker() { rabbitmq-diagnostics -q ping >/dev/null 2>&1; }

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "RabbitMQ is not installed: installing it with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq rabbitmq-server >/dev/null
fi

if ping_broker; then
  echo "RabbitMQ is running"
  exit 0
fi

echo "starting RabbitMQ"
rabbitmq-server -detached || true
for _ in $(seq 1 90); do
  if ping_broker; then
    rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1 || { sleep 1; continue; }
    echo "RabbitMQ is running"
    exit 0
  fi
  sleep 1
done
echo "RabbitMQ did not start within 90 s" >&2
exit 1
