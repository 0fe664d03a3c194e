#!/usr/bin/env bash
# Fuzzes the OpenAPI document against a real `pricestream run` with schemathesis (from
# PyPI, in a cached venv): every operation, valid and invalid inputs, random credentials.
# Any 5xx fails the check, and so does a response that breaks the document (status code,
# content type, headers or body schema).
#   SCHEMATHESIS_MAX_EXAMPLES (default 60) test cases per operation and phase.
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
note "pricestream run on $BASE (synthetic market, replayed fast), then fuzzing"
# a day of synthetic data so that every history route has something to return; the
# rate limits are lifted so that the fuzzer meets the handlers, not the limiter;
# bearer tokens are enabled so that the JWT path is fuzzed too
PRICESTREAM_DATA_DIR="$WORK/data" \
PRICESTREAM_API__LISTEN="127.0.0.1:$PORT" \
PRICESTREAM_CONNECTORS__SYNTHETIC__SPEED=0 \
PRICESTREAM_CONNECTORS__SYNTHETIC__START_MS=1763683200000 \
PRICESTREAM_CONNECTORS__SYNTHETIC__TRADES_PER_SEC=0.1 \
PRICESTREAM_CONNECTORS__SYNTHETIC__MAX_TRADES=10000 \
PRICESTREAM_API__AUTH__TIERS__ANONYMOUS__REQUESTS_PER_SEC=1000000.0 \
PRICESTREAM_API__AUTH__TIERS__ANONYMOUS__BURST=1000000 \
PRICESTREAM_API__AUTH__JWT__HS256_SECRET="schemathesis-check-secret-0123456789abcdef" \
PRICESTREAM_LOG=warn \
  "$BIN" --log-format json run 2>"$WORK/pricestream.log" &
PID=$!
for _ in $(seq 1 600); do
  grep -q "all connectors finished" "$WORK/pricestream.log" && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/pricestream.log" >&2; fail "pricestream exited early"; }
  sleep 0.2
done
wait_http "$BASE/health/live" 30 || { cat "$WORK/pricestream.log" >&2; fail "the API did not answer"; }
bars=$(curl -fsS "$BASE/v1/ohlcv?symbol=BTC-USDT&limit=5" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
[ "$bars" -gt 0 ] || fail "no bars were stored before fuzzing"

note "schemathesis $ST_VERSION against $BASE/openapi.json"
set +e
"$VENV/bin/st" run "$BASE/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-60}" \
  --workers 2 \
  --seed 1 \
  --request-timeout 10 \
  --generation-database none \
  --no-color \
  --report junit --report-junit-path "$WORK/junit.xml" \
  >"$WORK/st.log" 2>&1
rc=$?
set -e
cat "$WORK/st.log"
errors=$(grep -c '"level":"ERROR"' "$WORK/pricestream.log" || true)
kill -0 "$PID" 2>/dev/null || fail "pricestream died during the fuzz run"
[ "$rc" -eq 0 ] || fail "schemathesis found failures (above)"
[ "$errors" -eq 0 ] || { grep '"level":"ERROR"' "$WORK/pricestream.log" | head -20 >&2; fail "the server logged $errors errors"; }
note "schemathesis: no server errors, every response matches the document"
