#!/usr/bin/env bash
# Every SQL query of the Market and Ingestion runs dashboards runs against the PostgreSQL
# store, with the dashboard variables substituted, and returns rows. The store is filled
# by the real `pricestream run` (store.url = a fresh database on $PRICESTREAM_TEST_PG_URL's
# server) with a sped-up synthetic market that stops after a fixed number of trades.
#
# Needs PRICESTREAM_TEST_PG_URL (scripts/services/postgres.sh provides it) and a build
# whose store speaks PostgreSQL. In CI a missing database is a failure.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"

if [ -z "${PRICESTREAM_TEST_PG_URL:-}" ]; then
  missing "PRICESTREAM_TEST_PG_URL is not set: the dashboard SQL check needs a PostgreSQL server"
fi
command -v psql >/dev/null || apt_install postgresql-client
command -v psql >/dev/null || missing "psql is needed"

BIN=$(pricestream_bin)
WORK=$(mktemp -d)
DB="pricestream_dash_$$_$RANDOM"
PS_PID=""
cleanup() {
  if [ -n "$PS_PID" ]; then
    kill -TERM "$PS_PID" 2>/dev/null || true
    wait "$PS_PID" 2>/dev/null || true
  fi
  psql "$PRICESTREAM_TEST_PG_URL" -X -q -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

psql "$PRICESTREAM_TEST_PG_URL" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB" >/dev/null \
  || fail "cannot create database $DB on PRICESTREAM_TEST_PG_URL's server"
DB_URL=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' \
  "$PRICESTREAM_TEST_PG_URL" "$DB")

PORT=$(free_port)
T_FROM=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)

# An alert rule on the first symbol the Market dashboard offers (BNB-USDT sorts first among
# the synthetic market's), created through the API of `serve` before the run, so the
# dashboard's alert annotations have triggers to show.
export PRICESTREAM_ALERTS__SSRF_ALLOWLIST='["127.0.0.1/32"]'
KEY=$(PRICESTREAM_DATA_DIR="$WORK/data" PRICESTREAM_STORE__URL="$DB_URL" PRICESTREAM_LOG=warn \
  "$BIN" keys create --name dashboards --scopes read,alerts:write 2>"$WORK/keys.log") \
  || { cat "$WORK/keys.log" >&2; fail "pricestream keys create failed"; }
PRICESTREAM_DATA_DIR="$WORK/data" PRICESTREAM_STORE__URL="$DB_URL" \
PRICESTREAM_API__LISTEN="127.0.0.1:$PORT" PRICESTREAM_LOG=warn \
  "$BIN" serve 2>"$WORK/serve.log" &
PS_PID=$!
wait_http "http://127.0.0.1:$PORT/health/live" 60 \
  || { cat "$WORK/serve.log" >&2; fail "pricestream serve did not come up"; }
curl -fsS -X POST "http://127.0.0.1:$PORT/v1/alerts" -H "X-API-Key: $KEY" -H 'content-type: application/json' \
  -d '{"venue": "synthetic", "symbol": "BNB-USDT", "condition": {"kind": "above", "level": 0.01}, "url": "http://127.0.0.1:9/hook"}' \
  >"$WORK/rule.json" || { cat "$WORK/serve.log" >&2; fail "creating the alert rule failed"; }
kill -TERM "$PS_PID"
wait "$PS_PID" || { cat "$WORK/serve.log" >&2; fail "pricestream serve did not stop cleanly"; }
PS_PID=""
note "pricestream run into database $DB (synthetic market, 100 simulated minutes, 30000 trades)"
PRICESTREAM_DATA_DIR="$WORK/data" \
PRICESTREAM_STORE__URL="$DB_URL" \
PRICESTREAM_API__LISTEN="127.0.0.1:$PORT" \
PRICESTREAM_CONNECTORS__SYNTHETIC__SPEED=0 \
PRICESTREAM_CONNECTORS__SYNTHETIC__TRADES_PER_SEC=1.0 \
PRICESTREAM_CONNECTORS__SYNTHETIC__MAX_TRADES=30000 \
PRICESTREAM_PIPELINE__IDLE_TIMEOUT_MS=500 \
PRICESTREAM_LOG=warn \
  "$BIN" run 2>"$WORK/pricestream.log" &
PS_PID=$!
wait_http "http://127.0.0.1:$PORT/health/ready" 60 \
  || { cat "$WORK/pricestream.log" >&2; fail "pricestream run against PostgreSQL did not become ready"; }

# the connector stops after max_trades; the run is then recorded as completed and the
# pipeline flushes every window
for _ in $(seq 1 600); do
  done_runs=$(psql "$DB_URL" -X -A -t -c "SELECT count(*) FROM ingestion_runs WHERE status = 'completed'" 2>/dev/null || echo 0)
  [ "${done_runs:-0}" -ge 1 ] && break
  kill -0 "$PS_PID" 2>/dev/null || { cat "$WORK/pricestream.log" >&2; fail "pricestream exited"; }
  sleep 0.2
done
[ "${done_runs:-0}" -ge 1 ] || fail "no completed ingestion run after 120 s"
kill -TERM "$PS_PID"
wait "$PS_PID" || { cat "$WORK/pricestream.log" >&2; fail "pricestream did not stop cleanly"; }
PS_PID=""
note "$(psql "$DB_URL" -X -A -t -c "SELECT count(*) || ' bars, ' || (SELECT count(*) FROM ingestion_runs) || ' runs, ' || (SELECT count(*) FROM alert_triggers) || ' alert triggers' FROM bars")"

T_TO=$(date -u -d '+2 days' +%Y-%m-%dT%H:%M:%SZ)
PYTHONPATH="$ROOT/scripts/lib" python3 "$ROOT/scripts/lib/check_sql.py" "$DB_URL" "$T_FROM" "$T_TO" \
  || fail "dashboard SQL check failed"
