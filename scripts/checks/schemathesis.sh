#!/usr/bin/env bash
# Fuzzes the OpenAPI document against a real `pricestream run` with schemathesis (from
# PyPI, in a cached venv): every operation, valid and invalid inputs, random credentials.
# Any 5xx fails the check, and so does a response that breaks the document (status code,
# content type, headers or body schema).
#   SCHEMATHESIS_MAX_EXAMPLES (default 100) test cases per operation and phase.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"

ST_VERSION=4.32.5
VENV="$CACHE/venv-schemathesis"
command -v python3 >/dev/null || missing "python3 is needed for schemathesis"
command -v curl >/dev/null || apt_install curl
if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$ST_VERSION"; then
  note "installing schemathesis $ST_VERSION into $VENV"
  python3 -m venv "$VENV" || missing "python3 -m venv failed (Debian: python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION" \
    || missing "pip install schemathesis==$ST_VERSION failed"
fi

BIN=$(pricestream_bin)
WORK=$(mktemp -d)
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
export PRICESTREAM_DATA_DIR="$WORK/data"
export PRICESTREAM_API__LISTEN="127.0.0.1:$PORT"
# ~5.5 simulated hours of 5 symbols, so that every history route has something to return
export PRICESTREAM_CONNECTORS__SYNTHETIC__SPEED=0
export PRICESTREAM_CONNECTORS__SYNTHETIC__START_MS=1763683200000
export PRICESTREAM_CONNECTORS__SYNTHETIC__TRADES_PER_SEC=0.05
export PRICESTREAM_CONNECTORS__SYNTHETIC__MAX_TRADES=5000
export PRICESTREAM_PIPELINE__IDLE_TIMEOUT_MS=500
# the rate limits are lifted so that the fuzzer meets the handlers, not the limiter
export PRICESTREAM_API__AUTH__TIERS__ANONYMOUS__REQUESTS_PER_SEC=1000000.0
export PRICESTREAM_API__AUTH__TIERS__ANONYMOUS__BURST=1000000
# bearer tokens are enabled so that the JWT path meets the fuzzer's credentials too
export PRICESTREAM_API__AUTH__JWT__HS256_SECRET="schemathesis-check-secret-0123456789abcdef"
export PRICESTREAM_LOG=info

# fuzz NAME [st options…]: one schemathesis run against $BASE; fails on any finding
fuzz() {
  local name=$1
  shift
  note "schemathesis $ST_VERSION ($name) against $BASE/openapi.json"
  set +e
  # run inside $WORK: schemathesis keeps a cache folder in its working directory. One
  # worker: CPython 3.11 can fail to parse (hypothesis describes its filters with
  # ast.parse) from two threads at once ("AST constructor recursion depth mismatch").
  (cd "$WORK" && "$VENV/bin/st" run "$BASE/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" \
    --workers 1 \
    --seed 1 \
    --request-timeout 10 \
    --generation-database none \
    --no-color \
    --report junit --report-junit-path "$WORK/junit-$name.xml" \
    "$@") >"$WORK/st-$name.log" 2>&1
  local rc=$?
  set -e
  cat "$WORK/st-$name.log"
  kill -0 "$PID" 2>/dev/null || fail "pricestream died during the fuzz run"
  [ "$rc" -eq 0 ] || fail "schemathesis ($name) found failures (above)"
  grep -q "passed" "$WORK/st-$name.log" || fail "schemathesis ($name) ran no test"
}

stop_pricestream() {
  kill -TERM "$PID"
  wait "$PID" || true
  PID=""
}

# 1. every operation against `pricestream run` (the live stream exists there)
note "pricestream run on $BASE (synthetic market, replayed fast)"
"$BIN" --log-format json run 2>"$WORK/run.log" &
PID=$!
for _ in $(seq 1 600); do
  grep -q "all connectors finished" "$WORK/run.log" && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/run.log" >&2; fail "pricestream exited early"; }
  sleep 0.2
done
grep -q "all connectors finished" "$WORK/run.log" || { tail -20 "$WORK/run.log" >&2; fail "the synthetic connector did not finish"; }
wait_http "$BASE/health/live" 30 || { cat "$WORK/run.log" >&2; fail "the API did not answer"; }
# the sinks flush shortly after the connector finishes
bars=0
for _ in $(seq 1 150); do
  bars=$(curl -fsS "$BASE/v1/ohlcv?symbol=BTC-USDT&limit=5" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
  [ "$bars" -gt 0 ] && break
  sleep 0.2
done
[ "$bars" -gt 0 ] || fail "no bars were stored before fuzzing"
ops=$(curl -fsS "$BASE/openapi.json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(len(v) for v in d["paths"].values()))')
note "$ops operations in the document"
fuzz run
stop_pricestream

# 2. with seasonality profiles computed, against `pricestream serve`
"$BIN" analytics seasonality >/dev/null
"$BIN" --log-format json serve 2>"$WORK/serve.log" &
PID=$!
wait_http "$BASE/health/live" 30 || { cat "$WORK/serve.log" >&2; fail "pricestream serve did not answer"; }
curl -fsS "$BASE/v1/seasonality?symbol=BTC-USDT" >/dev/null || fail "no seasonality profile for BTC-USDT"
fuzz serve --include-path /v1/seasonality
stop_pricestream

errors=$(cat "$WORK/run.log" "$WORK/serve.log" | grep -c '"level":"ERROR"' || true)
[ "$errors" -eq 0 ] || { cat "$WORK/run.log" "$WORK/serve.log" | grep '"level":"ERROR"' | head -20 >&2; fail "the server logged $errors errors"; }
note "schemathesis: no server errors, every response matches the document"
