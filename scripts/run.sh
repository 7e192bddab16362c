#!/usr/bin/env bash
# `make run`: a local broker (unless ORDERFLOW_KAFKA_BOOTSTRAP answers), then one worker in the
# foreground with the embedded sandbox gateway (ORDERFLOW_GATEWAY=sandbox unless set otherwise).
# Ctrl-C stops the worker and the broker we started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
port="${ORDERFLOW_WEB_PORT:-6066}"

started_broker=0
if ! "$PY" -m orderflow.localkafka status >/dev/null 2>&1; then started_broker=1; fi
"$PY" -m orderflow.localkafka up
cleanup() {
  if [ "$started_broker" = 1 ]; then "$PY" -m orderflow.localkafka down; fi
}
trap cleanup EXIT

cat <<MSG

orderflow worker starting on http://127.0.0.1:${port} (Ctrl-C stops it). Try:

  curl -s -XPOST http://127.0.0.1:${port}/orders -H 'Content-Type: application/json' \\
       -H 'Idempotency-Key: demo-1' \\
       -d '{"customer_id":"c-1","currency":"EUR","items":[{"sku":"SKU-1","quantity":2,"unit_amount":1999}],"payment":{"token":"tok_visa"}}'
  curl -s 'http://127.0.0.1:${port}/orders/<order_id>?wait=5'

MSG
# The embedded sandbox gateway approves test tokens and takes no money: asked for by name.
ORDERFLOW_GATEWAY="${ORDERFLOW_GATEWAY:-sandbox}" "$PY" -m faust -A orderflow.app worker -l info &
worker=$!
trap 'kill -TERM "$worker" 2>/dev/null || true' INT TERM
wait "$worker" || true
wait "$worker" 2>/dev/null || true
