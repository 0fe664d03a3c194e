#!/usr/bin/env bash
# API load measurement with wrk (Debian package): a 1,440-bar OHLCV query (one day of 1m
# bars) and the latest quotes, against a real `pricestream run` seeded by the synthetic
# connector. Prints requests/s and p99 of each. Use a release binary:
#   cargo build --release && PRICESTREAM_TEST_BIN=$CARGO_TARGET_DIR/release/pricestream scripts/load-api.sh
#   LOAD_SECS (default 20), LOAD_CONNECTIONS (default 16).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
command -v wrk >/dev/null || apt_install wrk
command -v wrk >/dev/null || missing "wrk (Debian package wrk) is needed"

BIN=$(pricestream_bin)
WORK=$(mktemp -d)
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
# 5 symbols with ~10 trades a minute each for ~28 simulated hours: every minute has a bar
PRICESTREAM_DATA_DIR="$WORK/data" \
PRICESTREAM_API__LISTEN="127.0.0.1:$PORT" \
PRICESTREAM_CONNECTORS__SYNTHETIC__SPEED=0 \
PRICESTREAM_CONNECTORS__SYNTHETIC__START_MS=1763683200000 \
PRICESTREAM_CONNECTORS__SYNTHETIC__TRADES_PER_SEC=0.17 \
PRICESTREAM_CONNECTORS__SYNTHETIC__MAX_TRADES=85000 \
PRICESTREAM_API__AUTH__TIERS__ANONYMOUS__REQUESTS_PER_SEC=1000000000.0 \
PRICESTREAM_API__AUTH__TIERS__ANONYMOUS__BURST=1000000000 \
PRICESTREAM_LOG=info \
  "$BIN" --log-format json run 2>"$WORK/run.log" &
PID=$!
for _ in $(seq 1 600); do
  grep -q "all connectors finished" "$WORK/run.log" && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/run.log" >&2; fail "pricestream exited early"; }
  sleep 0.2
done
OHLCV="$BASE/v1/ohlcv?symbol=BTC-USDT&from=2025-11-21T00:00:00Z&to=2025-11-22T00:00:00Z&limit=1440"
n=0
for _ in $(seq 1 150); do
  n=$(curl -fsS "$OHLCV" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
  [ "$n" -eq 1440 ] && break
  sleep 0.2
done
[ "$n" -eq 1440 ] || fail "the day has $n bars, not 1440"

measure() {
  local name=$1 url=$2 out
  out="$WORK/$(printf '%s' "$name" | tr -c 'a-z0-9' '_').txt"
  wrk -t2 -c"${LOAD_CONNECTIONS:-16}" -d"${LOAD_SECS:-20}s" --timeout 10s --latency "$url" >"$out"
  local rps p99 bytes
  rps=$(awk '/^Requests\/sec/ {print $2}' "$out")
  p99=$(awk '$1 == "99%" {print $2}' "$out")
  bytes=$(curl -fsS -o /dev/null -w '%{size_download}' "$url")
  printf '%-28s %10s req/s   p99 %8s   (%s bytes per response)\n' "$name" "$rps" "$p99" "$bytes"
  grep -E "Non-2xx|Socket errors" "$out" || true
}
printf 'load average: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
measure "ohlcv 1440 bars (JSON)" "$OHLCV"
measure "quotes/latest" "$BASE/v1/quotes/latest"
