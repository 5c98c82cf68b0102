#!/usr/bin/env bash
# Writes deploy/compose/.env with fresh random secrets for the Compose deployment (once;
# an existing file is kept). Git ignores it: secrets never go in the repository.
set -euo pipefail
cd "$(dirname "$0")"
if [ -f .env ]; then echo "deploy/compose/.env exists: kept"; exit 0; fi
python3 - > .env <<'PY'
import json, secrets
keys = {c: secrets.token_urlsafe(24) for c in ("web", "email", "chat", "phone", "api")}
signing = {c: secrets.token_urlsafe(32) for c in ("chat", "email")}
print(f"SERVICE_TOKEN={secrets.token_urlsafe(32)}")
print(f"CHANNEL_KEYS='{json.dumps(keys)}'")
print(f"CHANNEL_SECRETS='{json.dumps(signing)}'")
print(f"STATUS_TOKEN_SECRET={secrets.token_urlsafe(32)}")
print(f"JWT_SECRET={secrets.token_urlsafe(48)}")
print(f"GATEWAY_ADMIN_PASSWORD={secrets.token_urlsafe(18)}")
print(f"RABBITMQ_PASSWORD={secrets.token_urlsafe(18)}")
PY
chmod 600 .env
echo "deploy/compose/.env written"
