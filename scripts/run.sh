#!/usr/bin/env bash
# `make run`: a local broker (unless ORDERFLOW_KAFKA_BOOTSTRAP answers), then one worker in the
# foreground with the embedded sandbox gateway (ORDERFLOW_GATEWAY=sandbox unless set otherwise).
# Ctrl-C stops the worker and the broker we started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
port="${ORDERFLOW_WEB_PORT:-6066}"

started_broker=0
if ! "$PY" -m orderflow kafka status >/dev/null 2>&1; then started_broker=1; fi
"$PY" -m orderflow kafka up
cleanup() {
  if [ "$started_broker" = 1 ]; then "$PY" -m orderflow kafka down; fi
}
trap cleanup EXIT

# A development API key and cluster secret, made once under .run/ (a real deployment configures
# its own: ORDERFLOW_API_KEYS_FILE with `orderflow api-key new CLIENT_ID`, ORDERFLOW_CLUSTER_SECRET).
mkdir -p .run
if [ -z "${ORDERFLOW_API_KEYS_FILE:-}" ]; then
  if [ ! -s .run/dev-api-key ] || [ ! -s .run/api-keys ]; then
    rm -f .run/api-keys
    "$PY" -m orderflow api-key new dev --keys-file .run/api-keys > .run/dev-api-key
  fi
  export ORDERFLOW_API_KEYS_FILE=.run/api-keys
  api_key="$(cat .run/dev-api-key)"
else
  api_key="<your API key>"
fi
if [ -z "${ORDERFLOW_CLUSTER_SECRET:-}" ]; then
  if [ ! -s .run/cluster-secret ]; then
    "$PY" -c 'import secrets; print(secrets.token_hex(32))' > .run/cluster-secret
  fi
  ORDERFLOW_CLUSTER_SECRET="$(cat .run/cluster-secret)"
  export ORDERFLOW_CLUSTER_SECRET
fi
chmod 600 .run/dev-api-key .run/cluster-secret 2>/dev/null || true
# Webhook endpoints on this machine (a receiver on 127.0.0.1) are refused by default (SSRF);
# a development worker allows them. Never set this in production.
export ORDERFLOW_WEBHOOK_ALLOW_PRIVATE="${ORDERFLOW_WEBHOOK_ALLOW_PRIVATE:-true}"

cat <<MSG

orderflow worker starting on http://127.0.0.1:${port} (Ctrl-C stops it).
Development API key (client "dev", kept in .run/dev-api-key): ${api_key}
Try:

  curl -s -XPOST http://127.0.0.1:${port}/orders -H 'Content-Type: application/json' \\
       -H "Authorization: Bearer ${api_key}" -H 'Idempotency-Key: demo-1' \\
       -d '{"customer_id":"c-1","currency":"EUR","items":[{"sku":"SKU-1","quantity":2,"unit_amount":1999}],"payment":{"token":"tok_visa"}}'
  curl -s -H "Authorization: Bearer ${api_key}" 'http://127.0.0.1:${port}/orders/<order_id>?wait=5'

MSG
# The embedded sandbox gateway approves test tokens and takes no money: asked for by name.
ORDERFLOW_GATEWAY="${ORDERFLOW_GATEWAY:-sandbox}" "$PY" -m faust -A orderflow.app worker -l info &
worker=$!
trap 'kill -TERM "$worker" 2>/dev/null || true' INT TERM
wait "$worker" || true
wait "$worker" 2>/dev/null || true
