#!/usr/bin/env bash
# A real embedded run writes the lake; polars, pandas and duckdb read it with partition
# filters and must find exactly what the store holds.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
: "${CARGO_TARGET_DIR:=$ROOT/target}"
BIN="$CARGO_TARGET_DIR/debug/pricestream"
[ -x "$BIN" ] || cargo build --locked --bin pricestream

if ! python3 -c 'import polars, pandas, duckdb, pyarrow' 2>/dev/null; then
  echo "installing polars, pandas, duckdb, pyarrow from PyPI"
  python3 -m pip install --quiet polars pandas duckdb pyarrow
fi

WORK=$(mktemp -d)
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# ~28 simulated hours across two midnights, as fast as possible
export PRICESTREAM_DATA_DIR="$WORK/data"
export PRICESTREAM_API__LISTEN="127.0.0.1:$PORT"
export PRICESTREAM_CONNECTORS__SYNTHETIC__SPEED=0
export PRICESTREAM_CONNECTORS__SYNTHETIC__START_MS=1763762400000
export PRICESTREAM_CONNECTORS__SYNTHETIC__SYMBOLS='["BTC-USDT","ETH-USDT","SOL-USDT"]'
# about 3 trades a minute per symbol: some minutes have none, and are gap-filled
export PRICESTREAM_CONNECTORS__SYNTHETIC__TRADES_PER_SEC=0.05
export PRICESTREAM_CONNECTORS__SYNTHETIC__MAX_TRADES=15000
export PRICESTREAM_PIPELINE__GAP_FILL_MINUTES=30
"$BIN" run 2>"$WORK/run.log" &
PID=$!
for _ in $(seq 1 600); do
  grep -q "all connectors finished" "$WORK/run.log" && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/run.log"; echo "pricestream exited early"; exit 1; }
  sleep 0.2
done
grep -q "all connectors finished" "$WORK/run.log" || { cat "$WORK/run.log"; echo "connectors did not finish"; exit 1; }
kill -TERM "$PID"
wait "$PID"
PID=""
grep -q "stopped cleanly" "$WORK/run.log" || { cat "$WORK/run.log"; exit 1; }
"$BIN" analytics seasonality
python3 "$ROOT/tests/python/test_lake.py" "$WORK/data"

# batch = stream: rollups and signals recomputed from the lake equal the stream's
"$BIN" analytics recompute | tee "$WORK/recompute.txt"
grep -q " 0 mismatches" "$WORK/recompute.txt"

# seasonality: the batch job's output, served by the API
"$BIN" serve 2>"$WORK/serve.log" &
PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/health/live" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/v1/seasonality?symbol=ETH-USDT" > "$WORK/season.json"
python3 - "$WORK/season.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["symbol"] == "ETH-USDT" and doc["hour_of_day"] and doc["weekday"], doc
assert all(0 <= h["bucket"] < 24 and h["count"] > 0 for h in doc["hour_of_day"])
print(f"ok seasonality: {len(doc['hour_of_day'])} hours, {len(doc['weekday'])} weekdays")
PY
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/seasonality?symbol=NOPE-USD")
[ "$code" = 404 ] || { echo "unknown symbol gave $code"; exit 1; }
