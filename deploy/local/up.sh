#!/usr/bin/env bash
# `make up`: run Sportello on this machine. Starts what it needs: RabbitMQ (installed if
# missing), MongoDB (MONGO_URL, else a Docker container, else the emulator), then every
# service under honcho. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"
# Where this run keeps its secrets, data, index and mail (tests point it elsewhere).
export RUN_DIR="${RUN_DIR:-.run}"
mkdir -p "$RUN_DIR"

bash deploy/local/ensure-rabbitmq.sh

# Secrets are generated on first run and kept out of git (.run/ is ignored).
if [ ! -f "$RUN_DIR/secrets.env" ]; then
  python - <<'PY' > "$RUN_DIR/secrets.env"
import json, secrets
keys = {c: secrets.token_urlsafe(24) for c in ("web", "email", "chat", "phone", "api")}
print(f"export SERVICE_TOKEN='{secrets.token_urlsafe(32)}'")
print(f"export CHANNEL_KEYS='{json.dumps(keys)}'")
signing = {c: secrets.token_urlsafe(32) for c in ("chat", "email")}
print(f"export CHANNEL_SECRETS='{json.dumps(signing)}'")
print(f"export STATUS_TOKEN_SECRET='{secrets.token_urlsafe(32)}'")
print(f"export JWT_SECRET='{secrets.token_urlsafe(48)}'")
print(f"export GATEWAY_ADMIN_PASSWORD='{secrets.token_urlsafe(18)}'")
PY
  chmod 600 "$RUN_DIR/secrets.env"
fi
# shellcheck disable=SC1091
source "$RUN_DIR/secrets.env"
# Files written by an older up.sh lack the newer secrets: add them.
grep -q CHANNEL_SECRETS "$RUN_DIR/secrets.env" || python - >> "$RUN_DIR/secrets.env" <<'PY'
import json, secrets
print(f"export CHANNEL_SECRETS='{json.dumps({c: secrets.token_urlsafe(32) for c in ('chat', 'email')})}'")
print(f"export STATUS_TOKEN_SECRET='{secrets.token_urlsafe(32)}'")
PY
source "$RUN_DIR/secrets.env"
grep -q GATEWAY_ADMIN_PASSWORD "$RUN_DIR/secrets.env" || python - >> "$RUN_DIR/secrets.env" <<'PY'
import secrets
print(f"export JWT_SECRET='{secrets.token_urlsafe(48)}'")
print(f"export GATEWAY_ADMIN_PASSWORD='{secrets.token_urlsafe(18)}'")
PY
source "$RUN_DIR/secrets.env"

# The emulator writes its snapshot as it stops: wait for it, so that a `make up` started
# right after this one ends finds every ticket.
cleanup() {
  if [ -n "${EMULATOR_PID:-}" ]; then
    kill "$EMULATOR_PID" 2>/dev/null || true
    wait "$EMULATOR_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if [ -n "${MONGO_URL:-}" ]; then
  echo "MongoDB: MONGO_URL=$MONGO_URL"
elif docker info >/dev/null 2>&1; then
  docker run -d --rm --name sportello-mongo -p 27017:27017 mongo:7.0 >/dev/null 2>&1 || true
  export MONGO_URL="mongodb://127.0.0.1:27017"
  echo "MongoDB: Docker container sportello-mongo (mongo:7.0) at $MONGO_URL"
else
  port="${MONGO_EMULATOR_PORT:-27017}"
  # In a session of its own: Ctrl-C stops the services first (they may still write on the
  # way out), and the trap stops the emulator after them.
  rm -f "$RUN_DIR/mongo.port"  # a stale one would name an old port
  setsid python -m sportello_mongo_emulator --port "$port" --port-file "$RUN_DIR/mongo.port" \
    --snapshot "$RUN_DIR/mongo-emulator.json" \
    > "$RUN_DIR/mongo-emulator.log" 2>&1 &
  EMULATOR_PID=$!
  for _ in $(seq 1 100); do [ -f "$RUN_DIR/mongo.port" ] && break; sleep 0.1; done
  export MONGO_URL="mongodb://127.0.0.1:$(cat "$RUN_DIR/mongo.port")"
  cat <<WARN

  ###########################################################################
  #  WARNING: no MongoDB server and no Docker here. Using the MongoDB        #
  #  wire-protocol EMULATOR (mongomock behind mockupdb) at $MONGO_URL  #
  #  It keeps its data in .run/mongo-emulator.json (every 30 s and on      #
  #  stop): a crash loses the last seconds; delete the file to start over.  #
  #  Set MONGO_URL to a real MongoDB for anything but development.          #
  ###########################################################################

WARN
fi
rm -f "$RUN_DIR/mongo.port"

export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
# One place for the ports: the Procfile, the links in notices and the lines below all
# read these, so INTAKE_PORT=9001 make up says and does 9001 everywhere.
export GATEWAY_PORT="${GATEWAY_PORT:-8000}"
export INTAKE_PORT="${INTAKE_PORT:-8001}" ROUTING_PORT="${ROUTING_PORT:-8002}"
export SLA_PORT="${SLA_PORT:-8003}" KNOWLEDGE_PORT="${KNOWLEDGE_PORT:-8004}"
export ANALYTICS_PORT="${ANALYTICS_PORT:-8005}"
export SMTP_LISTEN_PORT="${SMTP_LISTEN_PORT:-2525}"
export MAILCATCHER_PORT="${MAILCATCHER_PORT:-1025}"
export PUBLIC_URL="${PUBLIC_URL:-http://127.0.0.1:$INTAKE_PORT}"
# Outbound notices go to a local mail catcher (a line per message, kept in .run/mail) unless
# SMTP_RELAY_URL names a real relay; SLA announces the requester's time limit.
export SMTP_RELAY_URL="${SMTP_RELAY_URL:-smtp://127.0.0.1:$MAILCATCHER_PORT}"
export SLA_URL="${SLA_URL:-http://127.0.0.1:$SLA_PORT}"
export INTAKE_URL="${INTAKE_URL:-http://127.0.0.1:$INTAKE_PORT}"
export ROUTING_URL="${ROUTING_URL:-http://127.0.0.1:$ROUTING_PORT}"
export KNOWLEDGE_URL="${KNOWLEDGE_URL:-http://127.0.0.1:$KNOWLEDGE_PORT}"
export HELP_URL="${HELP_URL:-$KNOWLEDGE_URL}"
# The requester portal: where its mailed sign-in links point, and where knowledge's "it did
# not help" sends a requester (the portal's form, pre-filled).
export PORTAL_URL="${PORTAL_URL:-http://127.0.0.1:$GATEWAY_PORT}"
export TICKET_FORM_URL="${TICKET_FORM_URL:-$PORTAL_URL/portal/new}"
# Readable log lines in a terminal, JSON when the output goes to a file or a pipe.
if [ -z "${LOG_FORMAT:-}" ]; then
  if [ -t 1 ]; then export LOG_FORMAT=text; else export LOG_FORMAT=json; fi
fi
cat <<INFO
Sportello is starting (MongoDB: $MONGO_URL; logs: $LOG_FORMAT):
  gateway  http://127.0.0.1:$GATEWAY_PORT  (operators: docs at /docs; sign in as admin with
           \$GATEWAY_ADMIN_PASSWORD from $RUN_DIR/secrets.env: POST /api/auth/login)
  portal   $PORTAL_URL/portal  (requesters: the sign-in link arrives in $RUN_DIR/mail)
  intake   http://127.0.0.1:$INTAKE_PORT  (docs: /docs; channels post with X-Api-Key from $RUN_DIR/secrets.env)
           smtp://127.0.0.1:$SMTP_LISTEN_PORT (mail to help@sportello.localhost opens tickets)
  mail     notices to \$SMTP_RELAY_URL = $SMTP_RELAY_URL (the mailcatcher prints a line each, keeps them in $RUN_DIR/mail)
  routing  http://127.0.0.1:$ROUTING_PORT
  sla      http://127.0.0.1:$SLA_PORT
  knowledge http://127.0.0.1:$KNOWLEDGE_PORT  (requesters' help pages: /help; index in $RUN_DIR/knowledge-index)
  analytics http://127.0.0.1:$ANALYTICS_PORT  (KPIs: /kpis?from=&to=)
  internal APIs need: Authorization: Bearer \$SERVICE_TOKEN (in $RUN_DIR/secrets.env)
INFO
honcho start -f deploy/local/Procfile -e /dev/null
